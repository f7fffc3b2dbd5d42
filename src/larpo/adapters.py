"""LoRA adapters for the policy, with the ``peft`` library (the optional extra ``larpo[peft]``).

With adapters, one model in memory serves as both policy and reference: the reference log-probs are
those of the same model with its adapters disabled, i.e. of the frozen base weights. An iteration's
policy is saved as an adapter directory (``adapter_config.json`` + weights) and loaded onto the base.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from larpo.checks import check_known_keys
from larpo.errors import InputError

if TYPE_CHECKING:  # torch is imported where a model is handled: configs are checked without it
    import torch

MERGE_EXPORTS = ("no", "every", "last")


@dataclass(frozen=True)
class LoraSettings:
    """The ``peft`` section of a config: LoRA shape, and when to write a merged full model."""

    r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] | str = ("q_proj", "v_proj")
    merge_export: str = "no"  # no | every (iteration) | last (iteration only)

    def merge_after(self, iteration: int, iterations: int) -> bool:
        """Whether a merged model is written after ``iteration`` of ``iterations``."""
        return self.merge_export == "every" or (self.merge_export == "last" and iteration == iterations - 1)


def parse_lora(section: Any, where: str = "config: peft") -> LoraSettings | None:
    """LoraSettings from a config mapping (``None`` for no adapters).

    Raises:
        InputError: not a mapping, an unknown key, or a value of the wrong type or range.
    """
    if section is None:
        return None
    if not isinstance(section, dict):
        raise InputError(f"{where} must be a mapping such as {{r: 8, lora_alpha: 16}}, got {section!r}")
    valid = ["r", "lora_alpha", "lora_dropout", "target_modules", "merge_export"]
    check_known_keys(section, valid, f"{where}: unknown key", list_valid=True)
    r = section.get("r", LoraSettings.r)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise InputError(f"{where}: 'r' must be an integer >= 1, got {r!r}")
    alpha = section.get("lora_alpha", LoraSettings.lora_alpha)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or alpha <= 0:
        raise InputError(f"{where}: 'lora_alpha' must be a positive number, got {alpha!r}")
    dropout = section.get("lora_dropout", LoraSettings.lora_dropout)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise InputError(f"{where}: 'lora_dropout' must be in [0, 1), got {dropout!r}")
    targets = section.get("target_modules", list(LoraSettings.target_modules))
    if targets == "all-linear":
        pass
    elif isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets):
        targets = tuple(targets)
    else:
        raise InputError(
            f"{where}: 'target_modules' must be a non-empty list of module names or 'all-linear', got {targets!r}"
        )
    merge = section.get("merge_export", "no")
    merge = {False: "no", True: "every"}.get(merge, merge) if isinstance(merge, bool) else merge
    if merge not in MERGE_EXPORTS:
        raise InputError(f"{where}: 'merge_export' must be false, true, every or last; got {merge!r}")
    return LoraSettings(int(r), float(alpha), float(dropout), targets, merge)


def require_peft():
    """The ``peft`` module, or an InputError saying how to install it."""
    try:
        import peft
    except ImportError:
        raise InputError("the peft section needs the peft package: pip install 'larpo[peft]'") from None
    return peft


def check_targets(model: torch.nn.Module, settings: LoraSettings) -> None:
    """Raise an InputError naming any ``target_modules`` entry that matches no module of ``model``."""
    if isinstance(settings.target_modules, str):
        return
    names = [name for name, _ in model.named_modules() if name]
    missing = [t for t in settings.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        import torch

        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        )
        raise InputError(
            f"config: peft: target_modules {', '.join(missing)} not found in the model; "
            f"its linear layers are {', '.join(linear)}"
        )


def add_lora(model: torch.nn.Module, settings: LoraSettings, seed: int = 0):
    """``model`` wrapped with fresh, trainable LoRA adapters (the base weights frozen).

    The adapters start as the identity (LoRA's B matrices are zero); their A matrices are drawn from
    ``seed`` without touching the caller's random state.
    """
    import torch

    peft = require_peft()
    check_targets(model, settings)
    config = peft.LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.target_modules if isinstance(settings.target_modules, str)
        else list(settings.target_modules),
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return peft.get_peft_model(model, config)
        except ValueError as error:
            raise InputError(f"config: peft: {str(error).splitlines()[0]}") from None


def is_adapter_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a saved peft adapter."""
    return (Path(path) / "adapter_config.json").is_file()


def load_adapted(base: str | Path, adapter: str | Path, dtype: str = "auto", trainable: bool = False):
    """(model, tokenizer): the base model directory with the saved adapter of ``adapter`` on top."""
    from larpo.model_io import load_policy

    peft = require_peft()
    model, tokenizer = load_policy(base, dtype)
    model = peft.PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    return model, tokenizer


def is_adapted(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a peft model (checked without importing peft)."""
    return callable(getattr(model, "disable_adapter", None)) and hasattr(model, "peft_config")


@contextlib.contextmanager
def without_adapters(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run ``model`` as its base model (adapters disabled) inside the block; plain models are unchanged."""
    if is_adapted(model):
        with model.disable_adapter():
            yield model
    else:
        yield model


def save_merged(model: torch.nn.Module, tokenizer, directory: str | Path) -> torch.nn.Module:
    """Write a full Hugging Face model with the adapters merged in; return that merged model.

    The merge happens in place (no second copy of the weights), so ``model`` is no longer an adapted
    model afterwards: save its adapter first.
    """
    merged = model.merge_and_unload()
    merged.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return merged
