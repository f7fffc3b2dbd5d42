"""``larpo eval``: a model directory evaluated on a prompts file, written as ``eval.json`` and a plot."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from larpo.errors import InputError
from larpo.evaluation.held_out import (
    RANKING_PROMPTS,
    EvalSettings,
    evaluate_policy,
    evaluation_batches,
    export_alpaca_eval,
    implicit_rewards_of_lists,
    rankable_lists,
    ranking_quality,
)
from larpo.prompts import Prompt
from larpo.rewards import Reranker


@dataclass
class EvalInputs:
    """What every policy of one ``larpo eval`` is measured on: the prompts (rendered), the reranker, the
    settings (with the token budget resolved), and how the policies are loaded and framed."""

    prompts: list[Prompt]
    reranker: Reranker
    settings: EvalSettings
    chat_template: str
    dtype: str
    batch_size: int
    end_token_id: int | None
    """The token that ends a response (the chat template's end of turn; default EOS)."""

    def generator(self, path: Path):
        """The transformers generator of the model directory ``path``, stopping at its stop ids."""
        from larpo.chat import ChatFormat
        from larpo.generation import TransformersGenerator
        from larpo.model_io import load_policy

        policy, tokenizer = load_policy(path, self.dtype)
        stop_ids = ChatFormat(tokenizer, self.chat_template).stop_token_ids(policy)
        return TransformersGenerator(policy, tokenizer, batch_size=self.batch_size, stop_ids=stop_ids)

    def evaluate(self, generator, **options: Any) -> dict[str, Any]:
        """:func:`evaluate_policy` of ``generator`` on these prompts, the reward seeing each prompt as the
        file holds it, with its row's fields."""
        return evaluate_policy(
            generator, self.reranker, [p.text for p in self.prompts], self.settings,
            reward_prompts=[p.original for p in self.prompts], reward_fields=[p.fields for p in self.prompts],
            **options,
        )  # fmt: skip


def evaluate_model_dir(
    model: Path,
    prompts: Path,
    reward: str,
    output: Path,
    settings: EvalSettings,
    *,
    batch_size: int = 64,
    dtype: str = "auto",
    baseline_model: Path | None = None,
    alpaca_eval: Path | None = None,
    chat_template: str = "auto",
    baseline: Path | None = None,
    reference: Path | None = None,
) -> dict[str, Any]:
    """``larpo eval``: :func:`evaluate_policy` of the model directory ``model`` on the prompts file
    ``prompts`` with the reranker ``reward``; writes ``eval.json`` and ``pass_at_n.png`` to ``output``
    (and AlpacaEval outputs to ``alpaca_eval``). The win rate is against ``baseline_model``'s greedy outputs.
    Prompts are rendered under ``chat_template`` and samples stop at the policy's stop ids; the reward
    receives each prompt row's fields that it declares.

    ``baseline``: another ``larpo eval`` output directory, or a model directory (evaluated with the same
    settings, and the win-rate baseline unless ``baseline_model`` is given); its pass@N curve is drawn
    beside. ``reference`` (default: the initial model of the run ``model`` belongs to) gives the implicit
    reward whose NDCG and Kendall tau against the reranker are reported when the reward is graded.
    """
    from larpo.progress import generation_progress

    baseline_result = _baseline_eval(baseline)
    reference = reference or _run_initial_model(model)
    inputs, policy_generator = _prepare(model, prompts, reward, settings, chat_template, dtype, batch_size)
    if baseline is not None and baseline_result is None:  # a model directory: evaluate it the same way
        baseline_result = inputs.evaluate(inputs.generator(baseline))
        baseline_model = baseline_model or baseline
    versus = inputs.generator(baseline_model) if baseline_model is not None else None
    keep = reference is not None and inputs.settings.num_samples > 1
    total = evaluation_batches(inputs.settings, len(inputs.prompts), versus is not None)
    with generation_progress([g for g in (policy_generator, versus) if g], f"evaluating {model}", total):
        result = inputs.evaluate(policy_generator, baseline=versus, keep_samples=keep)
    if kept := result.pop("samples", None):
        result.update(_held_out_ranking(policy_generator, reference, inputs, kept))
    result["model"] = model_label(model)
    if baseline_result is not None:
        result["baseline"] = {k: baseline_result.get(k) for k in ("model", "greedy_accuracy", "mean_reward",
                                                                  "pass_at_k", "recall_curve")}  # fmt: skip
        result["baseline"]["model"] = baseline_result.get("model") or model_label(baseline)
    _write(result, output, alpaca_eval, inputs, model)
    return result


def _prepare(model: Path, prompts: Path, reward: str, settings: EvalSettings, chat_template: str,
             dtype: str, batch_size: int):  # fmt: skip
    """The checked inputs of :func:`evaluate_model_dir` and the generator of ``model``: every prompt
    renders, fits the model's context with the token budget, and has the fields the reward declares."""
    from larpo.chat import ChatFormat
    from larpo.generation import TransformersGenerator
    from larpo.model_io import check_prompt_lengths, fitting_max_new_tokens, load_policy
    from larpo.prompts import load_prompts, rendered
    from larpo.rewards import load_reranker

    items = load_prompts(prompts)
    reranker = load_reranker(reward)
    reranker.check_fields([(p.prompt_id, p.fields) for p in items], f"{prompts}: ")
    policy, tokenizer = load_policy(model, dtype)
    chat = ChatFormat(tokenizer, chat_template)
    items = rendered(items, chat, f"{prompts}: ")
    if settings.max_new_tokens is None:  # the default: as long as the model's context allows, up to 64
        budget = fitting_max_new_tokens(policy, tokenizer, (p.text for p in items))
        settings = dataclasses.replace(settings, max_new_tokens=budget)
    check_prompt_lengths(policy, tokenizer, [(repr(p.prompt_id), p.text) for p in items],
                         max_new_tokens=settings.max_new_tokens, where=f"{prompts}: ")  # fmt: skip
    generator = TransformersGenerator(
        policy, tokenizer, batch_size=batch_size, stop_ids=chat.stop_token_ids(policy)
    )
    inputs = EvalInputs(items, reranker, settings, chat_template, dtype, batch_size, chat.end_token_id)
    return inputs, generator


def _held_out_ranking(
    generator, reference: Path, inputs: EvalInputs, kept: dict[str, list]
) -> dict[str, Any]:
    """NDCG / Kendall tau of the implicit reward against ``reference`` on the policy's kept sample lists."""
    from larpo.model_io import load_policy

    chosen = rankable_lists(kept, RANKING_PROMPTS)
    if not chosen:
        return {}
    policy = generator.model
    rewards = implicit_rewards_of_lists(
        policy, load_policy(reference, inputs.dtype)[0].to(policy.device), generator.tokenizer,
        [inputs.prompts[i].text for i in chosen], [kept["responses"][i] for i in chosen],
        beta=1.0, end_token_id=inputs.end_token_id,  # the order does not depend on beta
    )  # fmt: skip
    return {**ranking_quality(rewards, [kept["scores"][i] for i in chosen]), "reference": str(reference)}


def _write(result: dict[str, Any], output: Path, alpaca_eval: Path | None, inputs: EvalInputs, model: Path):
    """``eval.json`` and ``pass_at_n.png`` in ``output``; the AlpacaEval outputs to ``alpaca_eval``."""
    from larpo.evaluation.plots import plot_recall_curves
    from larpo.io import atomic_write_json

    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output / "eval.json", result)
    baseline = result.get("baseline") or {}
    plot_recall_curves(result["recall_curve"], output / "pass_at_n.png", f"pass@N of {result['model']}",
                       name=result["model"], baseline=baseline.get("recall_curve"),
                       baseline_name=baseline.get("model", "baseline"))  # fmt: skip
    if alpaca_eval is not None:
        texts = [p.text for p in inputs.prompts]
        export_alpaca_eval(alpaca_eval, texts, result["greedy_outputs"], model.name)


def model_label(model: Path) -> str:
    """A readable name of a model directory: ``demo/sft``, or ``my_run/iter_2`` for ``my_run/iter_2/model``."""
    parts = Path(model).absolute().parts
    if parts[-1] in ("model", "merged") and len(parts) >= 3 and parts[-2].startswith("iter_"):
        return f"{parts[-3]}/{parts[-2]}"
    return "/".join(parts[-2:])


def _baseline_eval(baseline: Path | None) -> dict[str, Any] | None:
    """The results of a ``larpo eval`` output directory ``baseline``; None for a model directory."""
    if baseline is None:
        return None
    if (baseline / "eval.json").is_file():
        try:
            return json.loads((baseline / "eval.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"{baseline / 'eval.json'}: unreadable ({error})") from None
    if not (baseline / "config.json").is_file() and not (baseline / "adapter_config.json").is_file():
        raise InputError(
            f"{baseline}: --baseline is neither a larpo eval output (eval.json) nor a model directory"
        )
    return None


def _run_initial_model(model: Path) -> Path | None:
    """The initial model of the run that ``model`` (``RUN/iter_<s>/model``) belongs to, if any."""
    manifest = Path(model).absolute().parent.parent / "manifest.json"
    if Path(model).name != "model" or not manifest.is_file():
        return None
    from larpo.run.manifest import read_manifest

    initial = Path(read_manifest(manifest)["config"]["model"])
    return initial if initial.is_dir() else None
