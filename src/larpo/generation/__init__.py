"""Sampling candidate responses from the policy (the retriever's candidate generation step).

:class:`Generator` is the backend-neutral interface; :class:`TransformersGenerator` implements it with
Hugging Face ``model.generate``.
"""

from larpo.generation.base import Generations, Generator, SamplingParams, deduplicate
from larpo.generation.transformers_backend import TransformersGenerator

__all__ = ["Generations", "Generator", "SamplingParams", "TransformersGenerator", "deduplicate"]
