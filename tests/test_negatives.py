"""Off-policy negatives: donors from other prompts (random, related), row fields, and their lists."""

import pytest

from larpo.candidates import ListSettings, build_lists
from larpo.errors import InputError
from larpo.negatives import char_ngrams, jaccard, sample_external_negatives
from larpo.store import CandidateRecord
from tests.test_candidates import rec, responses

ARITHMETIC = [
    rec("46", None, 3, pid="a", prompt="12+34=", temperature=0.6),
    rec("45", None, 3, pid="a", prompt="12+34=", temperature=0.6),
    rec("47", None, 3, pid="b", prompt="12+35=", temperature=0.7, ref=-1.5),
    rec("46", None, 3, pid="b", prompt="12+35=", temperature=0.7),
    rec("686", None, 3, pid="c", prompt="98*7=", temperature=1.0),
    rec("680", None, 3, pid="c", prompt="98*7=", temperature=1.0),
]


def test_char_ngram_jaccard():
    assert char_ngrams("12+34=") == {"12+", "2+3", "+34", "34="}
    assert char_ngrams("ab") == {"ab"}
    assert jaccard(char_ngrams("12+34="), char_ngrams("12+35=")) == pytest.approx(1 / 3)
    assert jaccard(char_ngrams("12+34="), char_ngrams("98*7=")) == 0.0
    assert jaccard(set(), set()) == 0.0


def test_related_donor_is_the_nearest_prompt():
    negatives = sample_external_negatives(ARITHMETIC, 1, "related", seed=0)
    assert negatives == [
        rec("47", None, 3, pid="a", prompt="12+34=", source="related", temperature=0.7),
        rec("45", None, 3, pid="b", prompt="12+35=", source="related", temperature=0.6),
        rec("46", None, 3, pid="c", prompt="98*7=", source="related", temperature=0.6),
    ]


def test_related_takes_nearest_first_and_skips_own_responses():
    negatives = sample_external_negatives(ARITHMETIC, 2, "related", seed=0)
    by_prompt = {pid: [n.response for n in negatives if n.prompt_id == pid] for pid in "abc"}
    # "46" from b is skipped for a (a already has it); then the next prompt, c, donates.
    assert by_prompt == {"a": ["47", "686"], "b": ["45", "686"], "c": ["46", "45"]}


def test_too_few_donors_returns_what_exists():
    negatives = sample_external_negatives(ARITHMETIC, 10, "related", seed=0)
    by_prompt = {pid: [n.response for n in negatives if n.prompt_id == pid] for pid in "abc"}
    assert by_prompt == {"a": ["47", "686", "680"], "b": ["45", "686", "680"], "c": ["46", "45", "47"]}


def test_random_negatives_come_from_other_prompts_without_self_duplicates():
    negatives = sample_external_negatives(ARITHMETIC, 2, "random", seed=7)
    assert [n.prompt_id for n in negatives] == ["a", "a", "b", "b", "c", "c"]
    allowed = {"a": {"47", "686", "680"}, "b": {"45", "686", "680"}, "c": {"46", "45", "47"}}
    for negative in negatives:
        assert negative.response in allowed[negative.prompt_id]
        assert (negative.score, negative.iteration, negative.source) == (None, 3, "random")
        assert negative.reference_logp is None
    for pid in "abc":
        assert len({n.response for n in negatives if n.prompt_id == pid}) == 2
    everything = sample_external_negatives(ARITHMETIC, 10, "random", seed=7)
    assert {pid: {n.response for n in everything if n.prompt_id == pid} for pid in "abc"} == allowed


def test_random_negatives_are_deterministic_for_a_seed():
    first = sample_external_negatives(ARITHMETIC, 2, "random", seed=123)
    assert sample_external_negatives(ARITHMETIC, 2, "random", seed=123) == first
    seeds = {
        tuple(n.response for n in sample_external_negatives(ARITHMETIC, 2, "random", s)) for s in range(20)
    }
    assert len(seeds) > 1


def test_random_negative_copies_the_donor_temperature():
    records = [rec("1", None, pid="a", temperature=0.5), rec("2", None, pid="b", temperature=0.9)]
    negatives = sample_external_negatives(records, 1, "random", seed=0)
    assert [(n.prompt_id, n.prompt, n.response, n.temperature) for n in negatives] == [
        ("a", "prompt a", "2", 0.9),
        ("b", "prompt b", "1", 0.5),
    ]


def test_negative_carries_the_target_row_not_the_donors():
    target = rec("1", None, pid="a")
    target = CandidateRecord(
        **{
            **vars(target),
            "original_prompt": [{"role": "user", "content": "a?"}],
            "prompt_fields": {"answer": 1},
        }
    )
    donor = CandidateRecord(
        **{**vars(rec("2", None, pid="b")), "prompt_fields": {"answer": 2}, "response_ids": [5, 6]}
    )
    [for_a, for_b] = sample_external_negatives([target, donor], 1, "random", seed=0)
    assert (for_a.response, for_a.original_prompt, for_a.prompt_fields) == (
        "2",
        target.original_prompt,
        {"answer": 1},
    )
    assert (for_b.response, for_b.original_prompt, for_b.prompt_fields) == ("1", None, {"answer": 2})
    assert for_a.response_ids is None and for_a.finished is None


def test_external_records_never_donate():
    records = [*ARITHMETIC[:2], rec("99", None, 3, pid="b", prompt="12+35=", source="random")]
    negatives = sample_external_negatives(records, 5, "related", seed=0)
    assert [(n.prompt_id, n.response) for n in negatives] == [("b", "46"), ("b", "45")]


def test_sampling_rejects_bad_arguments():
    with pytest.raises(InputError, match="source"):
        sample_external_negatives(ARITHMETIC, 1, "policy", seed=0)
    with pytest.raises(InputError, match="count"):
        sample_external_negatives(ARITHMETIC, -1, "random", seed=0)
    with pytest.raises(ValueError, match="single iteration"):
        sample_external_negatives([rec("1", None, 0, pid="a"), rec("2", None, 1, pid="b")], 1, "random", 0)


def test_sampled_negatives_feed_the_lists_once_scored():
    policy = [
        rec("46", 1.0, 0, pid="a", prompt="12+34="),
        rec("45", 0.2, 0, pid="a", prompt="12+34="),
        rec("47", 1.0, 0, pid="b", prompt="12+35="),
        rec("48", 0.1, 0, pid="b", prompt="12+35="),
    ]
    external = sample_external_negatives(policy, 1, "related", seed=0)
    scored = [CandidateRecord(**{**vars(n), "score": -1.0}) for n in external]
    settings = ListSettings(positives=1, negatives=1, negative_source="related")
    lists, stats = build_lists(policy + scored, 0, settings)
    assert responses(lists) == [["46", "47"], ["47", "46"]]
    assert [r.sources for r in lists] == [["policy", "related"]] * 2
    assert stats.lists_built == 2
