"""Built-in tasks for demos and tests: problems, rule-based rewards, a tiny model and its SFT warm-up."""
