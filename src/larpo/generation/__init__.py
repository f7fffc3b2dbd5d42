"""Sampling candidate responses from the policy (the retriever's candidate generation step).

:class:`Generator` is the backend-neutral interface; :class:`TransformersGenerator` implements it with
Hugging Face ``model.generate``; :class:`VLLMGenerator` with a vLLM engine (optional extra ``larpo[vllm]``,
imported only when one is built).
"""

from larpo.generation.base import Generations, Generator, SamplingParams, deduplicate
from larpo.generation.transformers_backend import TransformersGenerator
from larpo.generation.vllm_backend import VLLMGenerator

__all__ = [
    "Generations",
    "Generator",
    "SamplingParams",
    "TransformersGenerator",
    "VLLMGenerator",
    "deduplicate",
]
