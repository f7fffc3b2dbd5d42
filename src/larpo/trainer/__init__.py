"""The listwise trainer: :class:`ListwiseTrainer` (a ``transformers.Trainer``), its arguments
:class:`ListwiseConfig`, and the checks of the lists a user trains on (:mod:`larpo.trainer.inputs`)."""

from larpo.trainer.config import ListwiseConfig
from larpo.trainer.trainer import ListwiseTrainer, add_reference_logps

__all__ = ["ListwiseConfig", "ListwiseTrainer", "add_reference_logps"]
