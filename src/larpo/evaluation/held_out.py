"""Evaluating a policy as a retriever (Jin et al. 2025, Sec. 2, Figure 5, Tables 5-6).

Greedy decoding is retrieval at N = 1; pass@N over sampled responses is Recall@N; best-of-N is a
retriever-reranker pipeline. Correctness is ``reward >= correct_threshold`` (1.0 for exact-match or the
built-in graded arithmetic reward).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from larpo.adapters import without_adapters
from larpo.errors import InputError
from larpo.evaluation.metrics import kendall_tau, mean_pass_at_k, ndcg_at_k, scale_to_unit, win_rate
from larpo.generation import Generator, SamplingParams
from larpo.reference import response_logps
from larpo.rewards import Reranker


@dataclass(frozen=True)
class EvalSettings:
    """What to measure. ``ks`` must not exceed ``num_samples``."""

    num_samples: int = 16
    temperatures: list[float] = field(default_factory=lambda: [1.0])
    ks: list[int] = field(default_factory=lambda: [1, 4, 16])
    max_new_tokens: int | None = 64
    """None: as long as the model's context allows, up to 64 (:func:`evaluate_model_dir`)."""
    correct_threshold: float = 1.0
    best_of: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise InputError(f"eval: num_samples must be at least 1, got {self.num_samples}")
        too_big = [k for k in self.ks if not 1 <= k <= self.num_samples]
        if too_big:
            raise InputError(
                f"eval: pass@k needs 1 <= k <= num_samples={self.num_samples}; got k={too_big[0]}"
            )
        if not self.temperatures or min(self.temperatures) <= 0:
            raise InputError("eval: sampling temperatures must be positive")


def evaluate_policy(
    generator: Generator,
    reranker: Reranker,
    prompts: list[str],
    settings: EvalSettings,
    *,
    baseline: Generator | None = None,
    keep_samples: bool = False,
    reward_prompts: list | None = None,
) -> dict[str, Any]:
    """Greedy accuracy and reward, pass@k and the Recall@N curve per temperature, optional best-of-N
    and win rate against a baseline policy's greedy outputs. With ``keep_samples`` the first temperature's
    distinct samples and their scores are returned under ``samples`` (held-out candidate lists).
    ``prompts`` are the texts the policy sees (rendered in its chat template); the reranker gets
    ``reward_prompts`` (the prompts as the file holds them, strings or message lists), default ``prompts``.

    Returns a JSON-ready dict; ``pass_at_k`` is for the first temperature, ``pass_at_k_by_temperature``
    and ``recall_curve`` (pass@N for N = 1..num_samples) cover all of them.
    """
    scored = prompts if reward_prompts is None else reward_prompts
    greedy = generator.greedy(prompts, settings.max_new_tokens)
    greedy_scores = [s[0] for s in reranker.score(scored, [[g] for g in greedy])]
    result: dict[str, Any] = {
        "prompts": len(prompts),
        "greedy_accuracy": _fraction(s >= settings.correct_threshold for s in greedy_scores),
        "mean_reward": sum(greedy_scores) / len(prompts),
        "settings": asdict(settings),
    }
    by_temperature, curves = {}, {}
    for index, temperature in enumerate(settings.temperatures):
        params = SamplingParams(
            settings.num_samples,
            temperature,
            max_new_tokens=settings.max_new_tokens,
            seed=settings.seed + index,
        )
        generations = generator.generate(prompts, params)
        scores = reranker.score(scored, generations.responses)
        totals = [sum(c) for c in generations.counts]
        correct = [
            sum(c for c, s in zip(counts, row, strict=True) if s >= settings.correct_threshold)
            for counts, row in zip(generations.counts, scores, strict=True)
        ]
        key = str(temperature)
        if keep_samples and index == 0:
            result["samples"] = {"responses": generations.responses, "scores": scores}
        by_temperature[key] = {str(k): mean_pass_at_k(totals, correct, k) for k in settings.ks}
        curves[key] = [mean_pass_at_k(totals, correct, n) for n in range(1, settings.num_samples + 1)]
    result["pass_at_k"] = by_temperature[str(settings.temperatures[0])]
    result["pass_at_k_by_temperature"] = by_temperature
    result["recall_curve"] = curves
    if settings.best_of:
        picked = best_of_n(generator, reranker, prompts, settings.best_of, settings.temperatures[0],
                           settings.max_new_tokens, settings.seed, reward_prompts=scored)  # fmt: skip
        picked_scores = [s[0] for s in reranker.score(scored, [[p] for p in picked])]
        result["best_of_n"] = {
            "n": settings.best_of,
            "accuracy": _fraction(s >= settings.correct_threshold for s in picked_scores),
            "mean_reward": sum(picked_scores) / len(prompts),
        }
    if baseline is not None:
        baseline_outputs = baseline.greedy(prompts, settings.max_new_tokens)
        baseline_scores = [s[0] for s in reranker.score(scored, [[b] for b in baseline_outputs])]
        result["win_rate"] = win_rate(greedy_scores, baseline_scores)
    result["greedy_outputs"] = greedy
    return result


def evaluation_batches(settings: EvalSettings, prompts: int, baseline: bool = False) -> int:
    """How many prompts :func:`evaluate_policy` generates for, counted as a progress bar counts them."""
    return prompts * (1 + len(settings.temperatures) + bool(settings.best_of) + baseline)


def best_of_n(
    generator: Generator,
    reranker: Reranker,
    prompts: list[str],
    n: int,
    temperature: float,
    max_new_tokens: int,
    seed: int = 0,
    *,
    reward_prompts: list | None = None,
) -> list[str]:
    """Retriever-reranker inference: sample ``n`` responses, return the one the reranker scores highest
    (it sees ``reward_prompts`` when given, as in :func:`evaluate_policy`)."""
    generations = generator.generate(
        prompts, SamplingParams(n, temperature, max_new_tokens=max_new_tokens, seed=seed)
    )
    scores = reranker.score(prompts if reward_prompts is None else reward_prompts, generations.responses)
    return [
        max(zip(row_scores, responses, strict=True), key=lambda pair: pair[0])[1]
        for row_scores, responses in zip(scores, generations.responses, strict=True)
    ]


def implicit_rewards_of_lists(
    policy: PreTrainedModel,
    reference: PreTrainedModel | None,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    responses: list[list[str]],
    beta: float,
    end_token_id: int | None = None,
) -> list[list[float]]:
    """``beta * (log pi - log pi_ref)`` of every response, as lists parallel to ``responses``.

    ``reference=None``: the reference is ``policy`` with its (peft) adapters disabled. Responses end with
    ``end_token_id`` (the chat template's end of turn; default EOS), as trained.
    """
    pairs = [(p, r) for p, row in zip(prompts, responses, strict=True) for r in row]
    policy_logps = iter(response_logps(policy, tokenizer, pairs, end_token_id=end_token_id))
    if reference is None:
        with without_adapters(policy):
            reference_logps = iter(response_logps(policy, tokenizer, pairs, end_token_id=end_token_id))
    else:
        reference_logps = iter(response_logps(reference, tokenizer, pairs, end_token_id=end_token_id))
    return [[beta * (next(policy_logps) - next(reference_logps)) for _ in row] for row in responses]


def ranking_quality(
    policy_rewards: list[list[float]], reranker_scores: list[list[float]], k: int | None = None
) -> dict[str, float | None]:
    """Mean NDCG@k and Kendall tau between the implicit-reward order and the reranker's, over lists.

    Relevance for NDCG is each list's reranker scores scaled to [0, 1]; lists whose scores are all tied
    carry no order and are left out of tau.
    """
    ndcgs = [ndcg_at_k(scale_to_unit(s), g, k) for g, s in zip(policy_rewards, reranker_scores, strict=True)]
    taus = [kendall_tau(g, s) for g, s in zip(policy_rewards, reranker_scores, strict=True)]
    taus = [t for t in taus if t is not None]
    return {
        "ndcg": sum(ndcgs) / len(ndcgs) if ndcgs else None,
        "kendall_tau": sum(taus) / len(taus) if taus else None,
    }


def export_alpaca_eval(
    path: str | Path, instructions: list[str], outputs: list[str], generator_name: str
) -> None:
    """Write AlpacaEval's ``model_outputs.json``: a list of ``{instruction, output, generator}``."""
    rows = [
        {"instruction": i, "output": o, "generator": generator_name}
        for i, o in zip(instructions, outputs, strict=True)
    ]
    Path(path).write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


RANKING_PROMPTS = 200
"""Held-out prompts whose sample lists measure NDCG / Kendall tau in ``larpo eval``."""


def rankable_lists(kept: dict[str, list], limit: int) -> list[int]:
    """Indices of the first ``limit`` sample lists (``responses`` and ``scores`` per prompt) that can be
    ranked: more than one response and not all scores tied (a graded reward)."""
    pairs = zip(kept["responses"], kept["scores"], strict=True)
    return [i for i, (responses, scores) in enumerate(pairs) if len(responses) > 1 and len(set(scores)) > 1][
        :limit
    ]


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
    Prompts are rendered under ``chat_template`` and samples stop at the policy's stop ids.

    ``baseline``: another ``larpo eval`` output directory, or a model directory (evaluated with the same
    settings, and the win-rate baseline unless ``baseline_model`` is given); its pass@N curve is drawn
    beside. ``reference`` (default: the initial model of the run ``model`` belongs to) gives the implicit
    reward whose NDCG and Kendall tau against the reranker are reported when the reward is graded.
    """
    from larpo.chat import ChatFormat
    from larpo.evaluation.plots import plot_recall_curves
    from larpo.generation import TransformersGenerator
    from larpo.io import atomic_write_json
    from larpo.model_io import check_prompt_lengths, fitting_max_new_tokens, load_policy
    from larpo.progress import generation_progress
    from larpo.prompts import load_prompts, rendered
    from larpo.rewards import load_reranker

    items = load_prompts(prompts)
    reranker = load_reranker(reward)
    baseline_result = _baseline_eval(baseline)
    reference = reference or _run_initial_model(model)
    policy, tokenizer = load_policy(model, dtype)
    chat = ChatFormat(tokenizer, chat_template)
    items = rendered(items, chat, f"{prompts}: ")
    if settings.max_new_tokens is None:  # the default: as long as the model's context allows, up to 64
        budget = fitting_max_new_tokens(policy, tokenizer, (p.text for p in items))
        settings = dataclasses.replace(settings, max_new_tokens=budget)
    check_prompt_lengths(policy, tokenizer, [(repr(p.prompt_id), p.text) for p in items],
                         max_new_tokens=settings.max_new_tokens, where=f"{prompts}: ")  # fmt: skip
    texts = [p.text for p in items]

    originals = [p.original for p in items]

    def generator(path: Path) -> TransformersGenerator:
        other, other_tokenizer = load_policy(path, dtype)
        stop_ids = ChatFormat(other_tokenizer, chat_template).stop_token_ids(other)
        return TransformersGenerator(other, other_tokenizer, batch_size=batch_size, stop_ids=stop_ids)

    if baseline is not None and baseline_result is None:  # a model directory: evaluate it the same way
        baseline_result = evaluate_policy(
            generator(baseline), reranker, texts, settings, reward_prompts=originals
        )
        baseline_model = baseline_model or baseline
    versus = generator(baseline_model) if baseline_model is not None else None
    keep = reference is not None and settings.num_samples > 1
    policy_generator = TransformersGenerator(
        policy, tokenizer, batch_size=batch_size, stop_ids=chat.stop_token_ids(policy)
    )
    total = evaluation_batches(settings, len(texts), versus is not None)
    with generation_progress([g for g in (policy_generator, versus) if g], f"evaluating {model}", total):
        result = evaluate_policy(policy_generator, reranker, texts, settings, baseline=versus, keep_samples=keep,
                                 reward_prompts=originals)  # fmt: skip
    kept = result.pop("samples", None)
    chosen = rankable_lists(kept, RANKING_PROMPTS) if kept else []
    if chosen:
        rewards = implicit_rewards_of_lists(policy, load_policy(reference, dtype)[0].to(policy.device), tokenizer,
                                            [texts[i] for i in chosen], [kept["responses"][i] for i in chosen],
                                            beta=1.0, end_token_id=chat.end_token_id)  # fmt: skip  # order independent of beta
        result.update(ranking_quality(rewards, [kept["scores"][i] for i in chosen]), reference=str(reference))
    result["model"] = model_label(model)
    if baseline_result is not None:
        result["baseline"] = {k: baseline_result.get(k) for k in ("model", "greedy_accuracy", "mean_reward",
                                                                  "pass_at_k", "recall_curve")}  # fmt: skip
        result["baseline"]["model"] = baseline_result.get("model") or model_label(baseline)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output / "eval.json", result)
    plot_recall_curves(result["recall_curve"], output / "pass_at_n.png", f"pass@N of {result['model']}",
                       name=result["model"], baseline=(result.get("baseline") or {}).get("recall_curve"),
                       baseline_name=(result.get("baseline") or {}).get("model", "baseline"))  # fmt: skip
    if alpaca_eval is not None:
        export_alpaca_eval(alpaca_eval, texts, result["greedy_outputs"], model.name)
    return result


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


def _fraction(flags) -> float:
    flags = list(flags)
    return sum(flags) / len(flags)
