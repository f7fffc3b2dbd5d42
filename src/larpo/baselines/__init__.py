"""Baselines built from other libraries' trainers, run inside larpo's loop for like-for-like comparisons."""
