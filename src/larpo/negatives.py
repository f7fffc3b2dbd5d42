"""Off-policy negatives: responses to OTHER prompts, used as a prompt's negatives (paper Figure 4(a)).

LarPO's default negatives are the policy's own low-ranked samples (hard negatives). The paper's
ablation replaces them with responses to other prompts: ``random`` (any other prompt) or ``related``
(the most similar prompts first, by character 3-gram Jaccard similarity of the prompt text).
:func:`sample_external_negatives` makes those records from one iteration's samples; once the reranker
has scored them for their new prompt, :func:`larpo.candidates.build_lists` puts them at the bottom of
the lists (``ListSettings.negative_source``).
"""

from __future__ import annotations

import random
from dataclasses import replace

from larpo.candidates import NEGATIVE_SOURCES, POLICY, is_policy
from larpo.checks import check_choice, check_int
from larpo.store import CandidateRecord

EXTERNAL_SOURCES = tuple(s for s in NEGATIVE_SOURCES if s != POLICY)


def sample_external_negatives(
    records: list[CandidateRecord], count: int, source: str, seed: int
) -> list[CandidateRecord]:
    """Negatives for each prompt taken from OTHER prompts' responses (paper Figure 4(a)).

    ``records`` are one iteration's samples; only policy samples (``source`` ``None``/``policy``)
    donate. For every prompt, up to ``count`` new unscored records are made with the target's
    ``prompt_id``/``prompt`` (and its ``original_prompt``/``prompt_fields``, so rewards see the
    target's row), the donor's response, iteration and temperature, and ``source``:

    - ``random``: donors drawn uniformly from all other prompts' responses (``random.Random(seed)``).
    - ``related``: donors from the most similar other prompts first (Jaccard over character 3-grams
      of the prompt text, ties by ``prompt_id``). A response to a related prompt is a harder
      negative than a random one: it looks plausible but answers a different question (Sec 3.2).

    A response identical to one the target already has, or already taken, is never used; with too
    few donors, fewer than ``count`` records are returned. The reranker scores them for the target.
    """
    check_choice("source", source, EXTERNAL_SOURCES)
    check_int("count", count, 0)
    if len({r.iteration for r in records}) > 1:
        raise ValueError("sample_external_negatives expects the records of a single iteration")
    groups: dict[str, list[CandidateRecord]] = {}
    for record in records:
        groups.setdefault(record.prompt_id, []).append(record)
    rng = random.Random(seed)
    negatives: list[CandidateRecord] = []
    for target_id, own in groups.items():
        donors = _unique_donors(_donor_order(groups, target_id, source), {r.response for r in own})
        picked = rng.sample(donors, min(count, len(donors))) if source == "random" else donors[:count]
        negatives.extend(_as_negative(donor, own[0], source) for donor in picked)
    return negatives


def char_ngrams(text: str, n: int = 3) -> set[str]:
    """The character ``n``-grams of ``text`` (the whole text when it is shorter than ``n``)."""
    if len(text) < n:
        return {text} if text else set()
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity ``|a & b| / |a | b|``; 0 for two empty sets."""
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def _donor_order(
    groups: dict[str, list[CandidateRecord]], target_id: str, source: str
) -> list[CandidateRecord]:
    """Other prompts' policy samples: in input order for ``random``; for ``related``, prompts by
    descending 3-gram Jaccard similarity to the target's prompt, ties by ``prompt_id``."""
    others = [pid for pid in groups if pid != target_id]
    if source == "related":
        target = char_ngrams(groups[target_id][0].prompt)
        others.sort(key=lambda pid: (-jaccard(target, char_ngrams(groups[pid][0].prompt)), pid))
    return [r for pid in others for r in groups[pid] if is_policy(r)]


def _unique_donors(donors: list[CandidateRecord], taken: set[str]) -> list[CandidateRecord]:
    """The first donor of each response text not in ``taken``, in order."""
    seen = set(taken)
    unique: list[CandidateRecord] = []
    for donor in donors:
        if donor.response not in seen:
            seen.add(donor.response)
            unique.append(donor)
    return unique


def _as_negative(donor: CandidateRecord, target: CandidateRecord, source: str) -> CandidateRecord:
    """``donor``'s response as an unscored candidate of ``target``'s prompt (row fields included)."""
    return replace(
        donor,
        prompt_id=target.prompt_id,
        prompt=target.prompt,
        original_prompt=target.original_prompt,
        prompt_fields=target.prompt_fields,
        score=None,
        reference_logp=None,
        source=source,
        response_ids=None,  # text from another prompt: tokenized once, with the template, like user text
        finished=None,
    )
