"""Candidate lists: memorization windows, dedup, selection, ties, negative sources, temperatures.

Sampling the off-policy negatives themselves is tested in test_negatives.py."""

import itertools

import pytest

from larpo.candidates import (
    CandidateList,
    ListSettings,
    build_lists,
    split_samples,
    temperature_for,
)
from larpo.errors import InputError
from larpo.store import CandidateRecord


def rec(
    response: str,
    score: float | None,
    iteration: int = 0,
    *,
    pid: str = "p",
    prompt: str | None = None,
    source: str | None = None,
    ref: float | None = None,
    temperature: float = 0.8,
) -> CandidateRecord:
    return CandidateRecord(
        prompt_id=pid,
        prompt=prompt if prompt is not None else f"prompt {pid}",
        response=response,
        score=score,
        iteration=iteration,
        temperature=temperature,
        reference_logp=ref,
        source=source,
    )


def responses(lists: list[CandidateList]) -> list[list[str]]:
    return [ranked.responses for ranked in lists]


# Two samples per iteration for one prompt; scores interleave across iterations.
THREE_ITERATIONS = [
    rec("a0", 1.0, 0),
    rec("b0", 3.0, 0),
    rec("a1", 2.0, 1),
    rec("b1", 5.0, 1),
    rec("a2", 4.0, 2),
    rec("b2", 0.0, 2),
]


# --- memorization -----------------------------------------------------------------------------


def test_memorization_current_uses_only_iteration_s():
    lists, stats = build_lists(THREE_ITERATIONS, 2, ListSettings(memorization="current"))
    assert lists == [
        CandidateList(
            prompt_id="p",
            prompt="prompt p",
            responses=["a2", "b2"],
            scores=[4.0, 0.0],
            reference_logps=[None, None],
            iterations=[2, 2],
            sources=["policy", "policy"],
        )
    ]
    assert stats.as_dict() == {
        "prompts_seen": 1,
        "lists_built": 1,
        "skipped_too_few": 0,
        "dropped_all_tied": 0,
        "kept_all_tied": 0,
        "duplicates_removed": 0,
        "candidates_in_lists": 2,
        "mean_list_size": 2.0,
    }


def test_memorization_previous_merges_s_and_s_minus_1():
    [ranked], stats = build_lists(THREE_ITERATIONS, 2, ListSettings(memorization="previous"))
    assert ranked.responses == ["b1", "a2", "a1", "b2"]
    assert ranked.scores == [5.0, 4.0, 2.0, 0.0]
    assert ranked.iterations == [1, 2, 1, 2]
    assert stats.candidates_in_lists == 4


def test_memorization_all_merges_every_iteration():
    [ranked], _ = build_lists(THREE_ITERATIONS, 2, ListSettings(memorization="all"))
    assert ranked.responses == ["b1", "a2", "b0", "a1", "a0", "b2"]
    assert ranked.scores == [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    assert ranked.iterations == [1, 2, 0, 1, 0, 2]


def test_later_iterations_are_never_used():
    assert responses(build_lists(THREE_ITERATIONS, 1, ListSettings(memorization="all"))[0]) == [
        ["b1", "b0", "a1", "a0"]
    ]
    assert responses(build_lists(THREE_ITERATIONS, 0, ListSettings(memorization="previous"))[0]) == [
        ["b0", "a0"]
    ]


# --- dedup --------------------------------------------------------------------------------------

REPEATED = [
    rec("x", 1.0, 0, ref=-1.0),
    rec("x", 1.0, 1, ref=-2.0),
    rec("y", 0.0, 1, ref=-4.0),
    rec("x", 1.0, 2, ref=-3.0),
    rec("z", 2.0, 2, ref=-5.0),
]


def test_dedup_keeps_the_newest_record_once():
    [ranked], stats = build_lists(REPEATED, 2, ListSettings(memorization="all"))
    assert ranked.responses == ["z", "x", "y"]
    assert ranked.iterations == [2, 2, 1]
    assert ranked.reference_logps == [-5.0, -3.0, -4.0]
    assert stats.duplicates_removed == 2
    assert stats.candidates_in_lists == 3


def test_dedup_off_keeps_every_copy_newest_first():
    [ranked], stats = build_lists(REPEATED, 2, ListSettings(memorization="all", dedup=False))
    assert ranked.responses == ["z", "x", "x", "x", "y"]
    assert ranked.iterations == [2, 2, 1, 0, 1]
    assert ranked.reference_logps == [-5.0, -3.0, -2.0, -1.0, -4.0]
    assert stats.duplicates_removed == 0


def test_dedup_within_one_iteration_keeps_the_first():
    records = [rec("x", 1.0, ref=-1.0), rec("x", 1.0, ref=-9.0), rec("y", 0.0)]
    [ranked], stats = build_lists(records, 0, ListSettings())
    assert ranked.responses == ["x", "y"]
    assert ranked.reference_logps == [-1.0, None]
    assert stats.duplicates_removed == 1


def test_dedup_counts_only_within_the_window():
    [ranked], stats = build_lists(REPEATED, 2, ListSettings(memorization="previous"))
    assert ranked.responses == ["z", "x", "y"]
    assert stats.duplicates_removed == 1  # x of iterations 1 and 2; iteration 0 is outside


# --- selection ---------------------------------------------------------------------------------

POOL_OF_6 = [rec(f"r{score}", float(score)) for score in (3, 6, 1, 4, 2, 5)]
POOL_OF_3 = [rec(f"r{score}", float(score)) for score in (2, 3, 1)]


@pytest.mark.parametrize(
    ("positives", "negatives", "expected"),
    [(1, 3, ["r6", "r3", "r2", "r1"]), (2, 2, ["r6", "r5", "r2", "r1"]), (1, 1, ["r6", "r1"])],
)
def test_top_and_bottom_selection_on_a_pool_of_6(positives, negatives, expected):
    settings = ListSettings(positives=positives, negatives=negatives)
    [ranked], stats = build_lists(POOL_OF_6, 0, settings)
    assert ranked.responses == expected
    assert ranked.scores == [float(r[1:]) for r in expected]
    assert stats.candidates_in_lists == len(expected)


@pytest.mark.parametrize(("positives", "negatives"), [(1, 3), (2, 2)])
def test_a_small_pool_is_kept_whole_without_repeats(positives, negatives):
    settings = ListSettings(positives=positives, negatives=negatives)
    [ranked], _ = build_lists(POOL_OF_3, 0, settings)
    assert ranked.responses == ["r3", "r2", "r1"]


def test_no_selection_keeps_the_whole_pool():
    [ranked], _ = build_lists(POOL_OF_6, 0, ListSettings())
    assert ranked.responses == ["r6", "r5", "r4", "r3", "r2", "r1"]


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (2, ["r6", "r1"]),
        (3, ["r6", "r3", "r1"]),
        (4, ["r6", "r4", "r3", "r1"]),
        (6, ["r6", "r5", "r4", "r3", "r2", "r1"]),
        (9, ["r6", "r5", "r4", "r3", "r2", "r1"]),
    ],
)
def test_max_candidates_spreads_evenly_keeping_best_and_worst(cap, expected):
    [ranked], _ = build_lists(POOL_OF_6, 0, ListSettings(max_candidates=cap))
    assert ranked.responses == expected


# --- ties, too few, ordering -------------------------------------------------------------------

ALL_TIED = [rec("b", 1.0, pid="t"), rec("a", 1.0, pid="t")]


def test_all_tied_prompt_is_dropped_and_counted():
    lists, stats = build_lists(ALL_TIED, 0, ListSettings())
    assert lists == []
    assert (stats.prompts_seen, stats.lists_built, stats.dropped_all_tied) == (1, 0, 1)
    assert stats.mean_list_size == 0.0


def test_all_tied_prompt_is_kept_when_asked():
    [ranked], stats = build_lists(ALL_TIED, 0, ListSettings(drop_all_tied=False))
    assert ranked.responses == ["a", "b"]
    assert ranked.scores == [1.0, 1.0]
    assert stats.dropped_all_tied == 0


def test_all_tied_lists_reaching_keep_tied_min_score_are_kept_the_rest_dropped():
    records = [*ALL_TIED, rec("x", 0.0, pid="wrong"), rec("y", 0.0, pid="wrong"),
               rec("r", 1.0, pid="mixed"), rec("w", 0.0, pid="mixed")]  # fmt: skip
    lists, stats = build_lists(records, 0, ListSettings(keep_tied_min_score=1.0))
    assert [(x.prompt_id, x.responses, x.scores) for x in lists] == [
        ("t", ["a", "b"], [1.0, 1.0]),
        ("mixed", ["r", "w"], [1.0, 0.0]),
    ]
    assert (stats.lists_built, stats.kept_all_tied, stats.dropped_all_tied) == (2, 1, 1)


def test_keep_tied_min_score_is_a_threshold_on_the_shared_score():
    _, stats = build_lists(ALL_TIED, 0, ListSettings(keep_tied_min_score=1.5))
    assert (stats.lists_built, stats.dropped_all_tied) == (0, 1)


def test_tied_bottom_is_chosen_by_response_text():
    records = [rec("hi", 5.0), rec("m1", 1.0), rec("m2", 1.0), rec("lo", 1.0)]
    lists, stats = build_lists(records, 0, ListSettings(positives=1, negatives=1))
    assert responses(lists) == [["hi", "m2"]]  # the tied tail ranks "lo", "m1", "m2"
    assert stats.dropped_all_tied == 0


def test_too_few_distinct_candidates_are_skipped():
    records = [
        rec("only", 1.0, pid="single"),
        rec("same", 1.0, pid="twice"),
        rec("same", 1.0, pid="twice"),
        rec("u", 2.0, pid="ok"),
        rec("v", 1.0, pid="ok"),
    ]
    lists, stats = build_lists(records, 0, ListSettings())
    assert [r.prompt_id for r in lists] == ["ok"]
    assert (stats.prompts_seen, stats.skipped_too_few, stats.duplicates_removed) == (3, 2, 1)
    lists, stats = build_lists(records, 0, ListSettings(dedup=False))
    assert [r.prompt_id for r in lists] == ["ok"]
    assert (stats.skipped_too_few, stats.duplicates_removed) == (2, 0)


def test_tie_break_is_newer_iteration_then_text_whatever_the_input_order():
    records = [rec("b", 1.0, 0), rec("a", 1.0, 0), rec("c", 1.0, 1), rec("z", 2.0, 0)]
    settings = ListSettings(memorization="all")
    for order in itertools.permutations(records):
        [ranked], _ = build_lists(order, 1, settings)
        assert ranked.responses == ["z", "c", "a", "b"]
        assert ranked.iterations == [0, 1, 0, 0]


def test_lists_follow_first_appearance_of_each_prompt():
    records = [
        rec("old", 9.0, 0, pid="q3"),
        rec("x", 1.0, 1, pid="q2"),
        rec("y", 2.0, 1, pid="q1"),
        rec("x", 1.0, 1, pid="q1"),
        rec("y", 2.0, 1, pid="q2"),
        rec("z", 0.0, 1, pid="q3"),
        rec("w", 3.0, 1, pid="q3"),
    ]
    lists, stats = build_lists(records, 1, ListSettings())
    assert [r.prompt_id for r in lists] == ["q3", "q2", "q1"]
    assert responses(lists) == [["w", "z"], ["y", "x"], ["y", "x"]]
    assert stats.mean_list_size == 2.0


def test_unscored_selected_record_is_a_programming_error():
    with pytest.raises(ValueError, match="unscored candidate for prompt 'p' in iteration 1"):
        build_lists([rec("a", 1.0, 1), rec("b", None, 1)], 1, ListSettings())


def test_unscored_records_outside_the_selection_are_ignored():
    records = [rec("old", None, 0), rec("a", 1.0, 1), rec("b", 0.0, 1), rec("n", None, 1, source="random")]
    assert responses(build_lists(records, 1, ListSettings())[0]) == [["a", "b"]]


# --- settings validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"memorization": "everything"}, "memorization"),
        ({"negative_source": "human"}, "negative_source"),
        ({"dedup": 1}, "dedup"),
        ({"drop_all_tied": "no"}, "drop_all_tied"),
        ({"keep_tied_min_score": "1"}, "keep_tied_min_score"),
        ({"keep_tied_min_score": 1.0, "drop_all_tied": False}, "keep_tied_min_score"),
        ({"positives": 0, "negatives": 1}, "positives"),
        ({"positives": 1, "negatives": True}, "negatives"),
        ({"positives": 1}, "positives and negatives"),
        ({"negatives": 2}, "positives and negatives"),
        ({"max_candidates": 1}, "max_candidates"),
        ({"positives": 1, "negatives": 1, "max_candidates": 3}, "max_candidates"),
        ({"negative_source": "related"}, "negative_source"),
    ],
)
def test_bad_settings_name_their_field(kwargs, field):
    with pytest.raises(InputError, match=field):
        ListSettings(**kwargs)


def test_bad_iteration_is_an_input_error():
    with pytest.raises(InputError, match="iteration"):
        build_lists([], -1, ListSettings())


# --- external negatives in lists ---------------------------------------------------------------

WITH_EXTERNAL = [
    rec("a", 5.0),
    rec("b", 3.0),
    rec("c", 1.0),
    rec("z", 2.0, source="random"),
    rec("x", 0.5, source="random"),
    rec("y", -1.0, source="random"),
    rec("b", -2.0, source="random"),  # same text as a policy sample: never a negative
    rec("w", 0.0, source="related"),
]


def test_random_negatives_replace_the_policy_negatives():
    settings = ListSettings(positives=1, negatives=2, negative_source="random")
    [ranked], stats = build_lists(WITH_EXTERNAL, 0, settings)
    assert ranked.responses == ["a", "x", "y"]
    assert ranked.sources == ["policy", "random", "random"]
    assert stats.duplicates_removed == 1


def test_related_negatives_are_taken_from_related_records_only():
    settings = ListSettings(positives=2, negatives=3, negative_source="related")
    [ranked], _ = build_lists(WITH_EXTERNAL, 0, settings)
    assert ranked.responses == ["a", "b", "w"]
    assert ranked.sources == ["policy", "policy", "related"]


def test_policy_source_ignores_external_records():
    [ranked], stats = build_lists(WITH_EXTERNAL, 0, ListSettings(positives=1, negatives=1))
    assert ranked.responses == ["a", "c"]
    assert stats.duplicates_removed == 0


def test_prompt_without_external_negatives_is_skipped():
    settings = ListSettings(positives=1, negatives=1, negative_source="random")
    lists, stats = build_lists([rec("a", 1.0), rec("b", 0.0)], 0, settings)
    assert lists == []
    assert stats.skipped_too_few == 1


# --- temperatures --------------------------------------------------------------------------------


def test_temperature_schedule():
    assert [temperature_for(s, 0.7) for s in range(3)] == [0.7, 0.7, 0.7]
    assert [temperature_for(s, [1.0, 0.8, 0.6]) for s in range(5)] == [1.0, 0.8, 0.6, 0.6, 0.6]
    with pytest.raises(InputError, match="empty"):
        temperature_for(0, [])
    with pytest.raises(InputError, match="iteration"):
        temperature_for(-1, 0.7)


@pytest.mark.parametrize(
    ("k", "temperatures", "expected"),
    [
        (8, [0.6, 0.8, 1.0], [(0.6, 3), (0.8, 3), (1.0, 2)]),
        (9, [0.6, 0.8, 1.0], [(0.6, 3), (0.8, 3), (1.0, 3)]),
        (2, [0.6, 0.8, 1.0], [(0.6, 1), (0.8, 1)]),
        (4, [0.7], [(0.7, 4)]),
        (0, [0.7, 1.0], []),
    ],
)
def test_split_samples(k, temperatures, expected):
    assert split_samples(k, temperatures) == expected
    assert sum(n for _, n in split_samples(k, temperatures)) == k


def test_split_samples_rejects_bad_arguments():
    with pytest.raises(InputError, match="k"):
        split_samples(-1, [1.0])
    with pytest.raises(InputError, match="temperatures"):
        split_samples(4, [])
