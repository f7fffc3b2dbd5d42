"""Candidate lists for one LarPO iteration: memorization, dedup, selection and negative sources.

Iteration ``s`` of LarPO (Jin et al., ICML 2025, Algorithm 1) samples ``k`` responses per prompt,
scores them with a reranker and trains the policy on each prompt's candidates ranked best-first.
:func:`build_lists` turns scored :class:`~larpo.store.CandidateRecord` s into those ranked lists
(negatives either the policy's own low-ranked samples or, with ``ListSettings.negative_source``,
responses to other prompts made by :func:`larpo.negatives.sample_external_negatives`);
:func:`temperature_for` and :func:`split_samples` schedule sampling temperatures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from larpo.checks import check_choice, check_int
from larpo.errors import InputError
from larpo.store import CandidateRecord

MEMORIZATION_MODES = ("current", "previous", "all")
NEGATIVE_SOURCES = ("policy", "random", "related")
POLICY = "policy"


@dataclass(frozen=True)
class ListSettings:
    """How candidate lists are built from the scored records.

    Attributes:
        memorization: which iterations feed iteration ``s``'s lists: ``current`` (only ``s``),
            ``previous`` (``s-1`` and ``s``) or ``all`` (``0..s``, the Merge of Algorithm 1).
        dedup: the same response text to the same prompt counts once, whether repeated across
            iterations (memorization) or within one. The NEWEST record is kept
            (ties: the first in input order): its iteration says when the text was last sampled and
            its score/reference log-prob come from the latest run (rerankers are deterministic, so
            the score is the same anyway).
        positives: keep the top ``positives`` of the ranked pool ...
        negatives: ... and its bottom ``negatives`` (Appendix H: contrastive 1 + 3, LambdaRank and
            ListMLE 2 + 2, pairwise 1 + 1). Both ``None`` keeps the whole pool; a pool no larger than
            ``positives + negatives`` is kept whole (no candidate twice).
        max_candidates: with no positives/negatives, cap the list at this size by an evenly spread
            subset of the ranking that includes the best and the worst candidate.
        drop_all_tied: drop (and count) a prompt whose selected candidates all share one score;
            when ``False`` it is kept and the objectives skip its tied pairs themselves.
        keep_tied_min_score: with ``drop_all_tied``, still keep an all-tied list whose shared score is
            at least this (and count it). Such a list has nothing to rank, but every candidate in it is
            a best one, so an NLL term imitates them all: with an exact reward and 1.0, the prompts the
            policy already solves stay in the imitation, as in standard rejection-sampling fine-tuning,
            while the all-wrong lists, which train nothing, are still dropped. None: drop every all-tied list.
        negative_source: ``policy`` (negatives are the policy's own low-ranked samples, the paper's
            hard negatives), or ``random``/``related`` (responses to other prompts, see
            :func:`larpo.negatives.sample_external_negatives`); the latter two need ``positives``
            and ``negatives``.
    """

    memorization: str = "current"
    dedup: bool = True
    positives: int | None = None
    negatives: int | None = None
    max_candidates: int | None = None
    drop_all_tied: bool = True
    keep_tied_min_score: float | None = None
    negative_source: str = POLICY

    def __post_init__(self) -> None:
        check_choice("memorization", self.memorization, MEMORIZATION_MODES)
        check_choice("negative_source", self.negative_source, NEGATIVE_SOURCES)
        for name in ("dedup", "drop_all_tied"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.keep_tied_min_score is not None:
            if isinstance(self.keep_tied_min_score, bool) or not isinstance(
                self.keep_tied_min_score, int | float
            ):
                raise InputError(f"keep_tied_min_score must be a number, got {self.keep_tied_min_score!r}")
            if not self.drop_all_tied:
                raise InputError("keep_tied_min_score applies only when drop_all_tied is true")
        _check_optional_int("positives", self.positives, 1)
        _check_optional_int("negatives", self.negatives, 1)
        _check_optional_int("max_candidates", self.max_candidates, 2)
        if (self.positives is None) != (self.negatives is None):
            raise InputError("positives and negatives must be set together (or both left unset)")
        if self.positives is not None and self.max_candidates is not None:
            raise InputError("max_candidates applies only when positives and negatives are unset")
        if self.negative_source != POLICY and self.positives is None:
            raise InputError(f"negative_source {self.negative_source!r} needs positives and negatives")


@dataclass
class CandidateList:
    """One prompt's candidates, best-first; the list fields are parallel.

    ``response_ids`` and ``finished`` hold each candidate's sampled token ids and stop flag (None for a
    candidate known only as text, e.g. an external negative); both are None when no candidate has them
    (plain-text runs, whose lists stay as they were).
    """

    prompt_id: str
    prompt: str
    responses: list[str]
    scores: list[float]
    reference_logps: list[float | None]
    iterations: list[int]
    sources: list[str]
    response_ids: list[list[int] | None] | None = None
    finished: list[bool | None] | None = None

    def to_dict(self) -> dict:
        """The list as one ``lists.jsonl`` item (``response_ids``/``finished`` left out when None)."""
        return {
            k: v for k, v in asdict(self).items() if v is not None or k not in ("response_ids", "finished")
        }


@dataclass
class ListStats:
    """Counts from one :func:`build_lists` call.

    Attributes:
        prompts_seen: prompts with at least one record in the window.
        lists_built: lists returned.
        skipped_too_few: prompts left with fewer than 2 distinct responses.
        dropped_all_tied: prompts whose selected candidates all share one score.
        kept_all_tied: all-tied prompts kept by ``keep_tied_min_score``.
        duplicates_removed: records dropped as repeats of a response the prompt already has
            (across or within iterations, or an external negative equal to a policy sample).
        candidates_in_lists: candidates over all lists.
        mean_list_size: ``candidates_in_lists / lists_built`` (0 with no lists).
    """

    prompts_seen: int = 0
    lists_built: int = 0
    skipped_too_few: int = 0
    dropped_all_tied: int = 0
    kept_all_tied: int = 0
    duplicates_removed: int = 0
    candidates_in_lists: int = 0
    mean_list_size: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        """The stats as a plain dict (for logs and JSON)."""
        return asdict(self)


def build_lists(
    records: Iterable[CandidateRecord], iteration: int, settings: ListSettings
) -> tuple[list[CandidateList], ListStats]:
    """Build iteration ``iteration``'s ranked lists from scored records of any iterations.

    Records outside the memorization window, later than ``iteration``, or from a source other than
    the policy (``source`` ``None`` or ``policy``) and ``settings.negative_source`` are ignored; every
    other record must be scored. Candidates are ranked by score, descending, ties broken by newer
    iteration first and then by response text, so the order never depends on the input order.
    A prompt with fewer than 2 distinct responses after dedup and selection is skipped. Lists come
    out in the order of each prompt's first appearance in ``records``.
    """
    check_int("iteration", iteration, 0)
    window = memorization_window(iteration, settings.memorization)
    groups: dict[str, list[CandidateRecord]] = {}
    for record in records:
        group = groups.setdefault(record.prompt_id, [])
        if record.iteration in window and (is_policy(record) or record.source == settings.negative_source):
            _require_score(record)
            group.append(record)
    stats = ListStats()
    lists: list[CandidateList] = []
    for group in filter(None, groups.values()):
        stats.prompts_seen += 1
        chosen, removed = _choose(group, settings)
        stats.duplicates_removed += removed
        all_tied = settings.drop_all_tied and len({r.score for r in chosen}) == 1
        if len({r.response for r in chosen}) < 2:
            stats.skipped_too_few += 1
        elif all_tied and not _at_least(chosen[0].score, settings.keep_tied_min_score):
            stats.dropped_all_tied += 1
        else:
            stats.kept_all_tied += all_tied
            lists.append(_to_list(chosen))
            stats.candidates_in_lists += len(chosen)
    stats.lists_built = len(lists)
    stats.mean_list_size = stats.candidates_in_lists / len(lists) if lists else 0.0
    return lists, stats


def temperature_for(iteration: int, temperature: float | list[float]) -> float:
    """The sampling temperature of ``iteration``: a float applies to every iteration; a list gives
    one value per iteration and its last value repeats beyond its end."""
    check_int("iteration", iteration, 0)
    if not isinstance(temperature, list):
        return float(temperature)
    if not temperature:
        raise InputError("temperature schedule must not be empty")
    return float(temperature[min(iteration, len(temperature) - 1)])


def split_samples(k: int, temperatures: list[float]) -> list[tuple[float, int]]:
    """Spread ``k`` samples over ``temperatures`` as evenly as possible (the paper's diverse
    temperature lists): earlier temperatures get the remainder; zero-count entries are dropped."""
    check_int("k", k, 0)
    if not temperatures:
        raise InputError("temperatures must not be empty")
    base, extra = divmod(k, len(temperatures))
    counts = [base + (i < extra) for i in range(len(temperatures))]
    return [(float(t), n) for t, n in zip(temperatures, counts, strict=True) if n]


def memorization_window(iteration: int, memorization: str) -> range:
    """The iterations whose candidates feed iteration ``iteration``'s lists (see :class:`ListSettings`)."""
    check_choice("memorization", memorization, MEMORIZATION_MODES)
    first = {"current": iteration, "previous": max(iteration - 1, 0), "all": 0}[memorization]
    return range(first, iteration + 1)


def is_policy(record: CandidateRecord) -> bool:
    """Whether ``record`` is the policy's own sample (``source`` ``None`` or ``policy``)."""
    return record.source in (None, POLICY)


def _check_optional_int(name: str, value: object, minimum: int) -> None:
    if value is not None:
        check_int(name, value, minimum)


def _at_least(score: float, threshold: float | None) -> bool:
    """Whether ``score`` reaches ``threshold`` (never when the threshold is None)."""
    return threshold is not None and score >= threshold


def _require_score(record: CandidateRecord) -> None:
    if record.score is None:
        raise ValueError(
            f"unscored candidate for prompt {record.prompt_id!r} in iteration {record.iteration}: "
            "score every candidate before building lists"
        )


def _rank_key(record: CandidateRecord) -> tuple[float, int, str]:
    """Best first: higher score, then newer iteration, then response text."""
    return (-record.score, -record.iteration, record.response)


def _ranked(records: list[CandidateRecord]) -> list[CandidateRecord]:
    return sorted(records, key=_rank_key)


def _dedup(records: list[CandidateRecord]) -> list[CandidateRecord]:
    """One record per response text: the newest, the first in input order among equals."""
    kept: dict[str, CandidateRecord] = {}
    for record in records:
        if record.response not in kept or record.iteration > kept[record.response].iteration:
            kept[record.response] = record
    return list(kept.values())


def _spread(ranked: list[CandidateRecord], size: int | None) -> list[CandidateRecord]:
    """``size`` candidates evenly spread over ``ranked``, best and worst included."""
    if size is None or len(ranked) <= size:
        return ranked
    last = len(ranked) - 1
    steps = size - 1
    return [ranked[(i * last + steps // 2) // steps] for i in range(size)]


def _top_bottom(ranked: list[CandidateRecord], top: int, bottom: int) -> list[CandidateRecord]:
    """The top ``top`` and bottom ``bottom`` of ``ranked``; all of it when it is not larger."""
    if len(ranked) <= top + bottom:
        return ranked
    return ranked[:top] + ranked[-bottom:]


def _choose(group: list[CandidateRecord], settings: ListSettings) -> tuple[list[CandidateRecord], int]:
    """One prompt's selected candidates, best-first, and how many duplicates were removed.

    With external negatives, positives are the top policy samples and negatives the bottom
    external ones; an external response equal to a policy one is a duplicate (never on both
    sides), and a prompt lacking either side yields no list.
    """
    policy = [r for r in group if is_policy(r)]
    own = {r.response for r in policy}
    external = [r for r in group if not is_policy(r) and r.response not in own]
    if settings.dedup:
        policy, external = _dedup(policy), _dedup(external)
    removed = len(group) - len(policy) - len(external)
    if settings.negative_source == POLICY:  # ``group`` holds policy samples only
        ranked = _ranked(policy)
        if settings.positives is None:
            return _spread(ranked, settings.max_candidates), removed
        return _top_bottom(ranked, settings.positives, settings.negatives), removed
    if not policy or not external:
        return [], removed
    top = _ranked(policy)[: settings.positives]
    bottom = _ranked(external)[-settings.negatives :]
    return _ranked(top + bottom), removed


def _to_list(chosen: list[CandidateRecord]) -> CandidateList:
    return CandidateList(
        prompt_id=chosen[0].prompt_id,
        prompt=chosen[0].prompt,
        responses=[r.response for r in chosen],
        scores=[r.score for r in chosen],
        reference_logps=[r.reference_logp for r in chosen],
        iterations=[r.iteration for r in chosen],
        sources=[r.source or POLICY for r in chosen],
        response_ids=[r.response_ids for r in chosen] if any(r.response_ids for r in chosen) else None,
        finished=[r.finished for r in chosen] if any(r.finished is not None for r in chosen) else None,
    )
