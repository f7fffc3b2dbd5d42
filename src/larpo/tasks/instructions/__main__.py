"""``python -m larpo.tasks.instructions``: write the task's prompt files (:mod:`.splits`)."""

from larpo.tasks.instructions.splits import main

main()
