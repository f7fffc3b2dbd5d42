"""larpo: LLM alignment as retriever optimization (Jin et al., ICML 2025, arXiv 2502.03699).

The policy is a retriever, the reward model a reranker; the policy is trained with ranking objectives
on the implicit reward ``beta * log(pi / pi_ref)`` over candidate lists it sampled itself.

``import larpo`` loads no torch, so the command line checks its arguments and configs in a fraction of a
second; torch and transformers are imported by the modules that handle models.
"""

__version__ = "0.1.0"

__all__ = ["OBJECTIVES", "__version__", "get_objective", "register_objective"]


def __getattr__(name: str) -> object:
    """The objective registry's names, imported on first use (``larpo --version`` needs none of it)."""
    if name in ("OBJECTIVES", "get_objective", "register_objective"):
        from larpo import losses

        return getattr(losses, name)
    raise AttributeError(f"module 'larpo' has no attribute {name!r}")
