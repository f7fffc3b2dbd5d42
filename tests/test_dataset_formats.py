"""Dataset formats read into ranked lists: one small file of each shape (tests/data/formats), checked
against lists worked out by hand, and malformed rows of each format (tests/data/bad)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from larpo.dataset_formats import detect_format, prompt_rows, read_lists
from larpo.errors import InputError
from larpo.store import CandidateRecord

DATA = Path(__file__).parent / "data" / "formats"
BAD = Path(__file__).parent / "data" / "bad"
USER = [{"role": "user", "content": "1+1="}]
# Worked out by hand from the files: "2+3=" ranks 5 > 6 > 4; "1+1=" (a message prompt) ranks 2 > 3;
# "9+9=" has one distinct response (skipped); "7+1=" has two responses with one score (dropped).
EXPECTED = [
    {"prompt": "2+3=", "responses": ["5", "6", "4"], "scores": [2.0, 1.0, 0.0]},
    {"prompt": USER, "responses": ["2", "3"], "scores": [1.0, 0.0]},
]


def test_lists_file():
    lists, stats = read_lists(DATA / "lists.jsonl")
    assert lists == EXPECTED
    assert stats.as_dict() == {
        "format": "lists", "rows": 4, "lists_built": 2, "skipped_too_few": 1, "dropped_all_tied": 1,
        "duplicates_removed": 1, "missing_ratings": 0,
    }  # fmt: skip


def test_ranked_file_scores_are_descending_ranks():
    lists, stats = read_lists(DATA / "ranked.jsonl")
    assert lists == EXPECTED
    assert (stats.format, stats.rows, stats.skipped_too_few, stats.duplicates_removed) == ("ranked", 3, 1, 1)


def test_rated_file_ranks_by_the_named_rating_and_leaves_out_missing_ones():
    lists, stats = read_lists(DATA / "rated.jsonl", rating="overall_score")
    assert lists == EXPECTED  # "instruction" read as the prompt; the rating "0" as a number
    assert stats.as_dict() == {
        "format": "rated", "rows": 4, "lists_built": 2, "skipped_too_few": 1, "dropped_all_tied": 1,
        "duplicates_removed": 0, "missing_ratings": 2,
    }  # fmt: skip
    assert stats.summary() == (
        "4 rows read as rated: 2 lists, 1 skipped with fewer than 2 distinct responses, "
        "1 dropped with all scores tied, 2 completions without a rating left out"
    )


def test_rated_nested_rating_path(tmp_path):
    """UltraFeedback's per-aspect ratings: strings under annotations.<aspect>.Rating."""
    completions = [
        {"response": text, "annotations": {"helpfulness": {"Rating": rating}, "honesty": {"Rating": "5"}}}
        for text, rating in (("a", "2"), ("b", "4"), ("c", "N/A"), ("d", "1"))
    ]
    path = tmp_path / "uf.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completions": completions}) + "\n")
    lists, stats = read_lists(path, rating="annotations.helpfulness.Rating")
    assert lists == [{"prompt": "p", "responses": ["b", "a", "d"], "scores": [4.0, 2.0, 1.0]}]
    assert stats.missing_ratings == 1
    lists, _ = read_lists(path, rating="annotations.honesty.Rating", drop_all_tied=False)
    assert lists[0]["responses"] == ["a", "b", "c", "d"]  # all tied at 5: ranked by text


def test_pairs_file():
    lists, stats = read_lists(DATA / "pairs.jsonl")
    assert lists == [
        {"prompt": "2+3=", "responses": ["5", "6"], "scores": [1.0, 0.0]},
        {"prompt": USER, "responses": ["2", "3"], "scores": [1.0, 0.0]},
    ]
    assert (stats.format, stats.lists_built, stats.skipped_too_few, stats.duplicates_removed) == (
        "pairs", 2, 1, 1
    )  # fmt: skip


def test_implicit_prompt_pairs_take_the_shared_messages_as_the_prompt():
    lists, _ = read_lists(DATA / "pairs_implicit.jsonl")
    system = {"role": "system", "content": "Answer with a number."}
    assert lists == [
        {"prompt": USER, "responses": ["2", "3"], "scores": [1.0, 0.0]},
        {
            "prompt": [system, {"role": "user", "content": "2+3="}],
            "responses": ["5", "6"],
            "scores": [1.0, 0.0],
        },
    ]


def test_multi_turn_implicit_prompt_ends_before_the_differing_reply(tmp_path):
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, *USER]
    row = {
        "chosen": [*turns, {"role": "assistant", "content": "2"}],
        "rejected": [*turns, {"role": "assistant", "content": "11"}],
    }
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(row) + "\n")
    assert read_lists(path)[0] == [{"prompt": turns, "responses": ["2", "11"], "scores": [1.0, 0.0]}]


def test_datasets_folder_reads_like_jsonl(tmp_path):
    import datasets

    for name, options in (("pairs_implicit", {}), ("ranked", {})):
        rows = [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines()]
        if name == "ranked":
            rows = rows[:1] + rows[2:]  # one Arrow schema: string prompts only
        datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / name))
        folder = tmp_path / name
        jsonl = tmp_path / f"{name}.jsonl"
        jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
        assert read_lists(folder, **options) == read_lists(jsonl, **options)
    assert read_lists(tmp_path / "ranked")[0] == [EXPECTED[0]]


def test_scored_candidate_records_are_grouped_by_prompt(tmp_path):
    records = [
        CandidateRecord("a", "2+3=", "5", 1.0, 0, 1.0),
        CandidateRecord("a", "2+3=", "6", 0.0, 0, 1.0),
        CandidateRecord("a", "2+3=", "4", 0.5, 1, 1.0),
        CandidateRecord("b", "1+1=", "2", 1.0, 1, 1.0),
    ]
    path = tmp_path / "candidates.jsonl"
    path.write_text("".join(r.to_json() + "\n" for r in records))
    lists, stats = read_lists(path)
    assert lists == [{"prompt": "2+3=", "responses": ["5", "4", "6"], "scores": [1.0, 0.5, 0.0]}]
    assert (stats.format, stats.lists_built, stats.skipped_too_few) == ("candidates", 1, 1)


def test_forced_format_and_detection():
    assert [detect_format(c) for c in (["prompt", "chosen", "rejected"], ["chosen", "rejected"],
            ["instruction", "completions"], ["prompt", "responses"], ["prompt", "responses", "scores"],
            ["prompt_id", "prompt", "response", "score", "iteration", "temperature"])] == [
        "pairs", "pairs", "rated", "ranked", "lists", "candidates"]  # fmt: skip
    lists, stats = read_lists(DATA / "lists.jsonl", format="ranked")  # the scores are ignored
    assert stats.format == "ranked"
    assert lists[0] == {"prompt": "2+3=", "responses": ["6", "5", "4"], "scores": [2.0, 1.0, 0.0]}
    with pytest.raises(InputError, match="format must be one of lists, ranked, pairs, rated, candidates"):
        read_lists(DATA / "lists.jsonl", format="dpo")
    with pytest.raises(InputError, match=r"cannot tell the format from the columns \(id, question\)"):
        detect_format(["question", "id"])


def test_prompt_rows_of_each_format():
    assert prompt_rows(DATA / "pairs_implicit.jsonl")[0] == {"prompt": USER}
    assert [row["prompt"] for row in prompt_rows(DATA / "rated.jsonl")] == ["2+3=", USER, "9+9=", "7+1="]
    assert prompt_rows(DATA / "pairs.jsonl")[2] == {"prompt": "9+9="}


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("lists_scores_not_numbers.jsonl", {}, "lists_scores_not_numbers.jsonl: record 2: 'scores' must hold numbers"),
        ("lists_responses_not_list.jsonl", {}, "record 1: 'responses' must be a list of strings"),
        ("lists_scores_wrong_length.jsonl", {}, "record 1: 'scores' must be a list with one number per response"),
        ("ranked_prompt_missing.jsonl", {}, "ranked_prompt_missing.jsonl: record 2: 'prompt' must be a non-empty "
         "string or a list of messages"),
        ("ranked_bad_message.jsonl", {}, "record 1: 'prompt' must be a list of {'role', 'content'} messages"),
        ("pairs_chosen_not_text.jsonl", {}, "pairs_chosen_not_text.jsonl: record 2: 'chosen' must be a string "
         "or one assistant message"),
        ("pairs_implicit_no_shared_prompt.jsonl", {}, "record 1: 'chosen' and 'rejected' share no opening message"),
        ("pairs_implicit_not_conversation.jsonl", {}, "record 1: without a 'prompt', 'chosen' must be a whole "
         "conversation"),
        ("rated_rating_not_number.jsonl", {}, "rated_rating_not_number.jsonl: record 1: completion 2: rating "
         "'rating' must be a number, got 'great'"),
        ("rated_completion_without_response.jsonl", {}, "record 1: completion 1: no 'response' field (fields: "
         "text, rating)"),
        ("rated_no_rating_field.jsonl", {}, "rated_no_rating_field.jsonl: no completion has a rating 'rating'"),
        ("rated_no_rating_field.jsonl", {"rating": "overall_score.value"}, "no completion has a rating"),
        ("candidates_unscored.jsonl", {}, "candidates without a score; run `larpo score` first"),
        ("candidates_prompt_mismatch.jsonl", {}, "was used for another prompt"),
        ("candidates_all_tied.jsonl", {}, "no prompt has 2 differently scored candidates to rank"),
        ("lists_truncated.jsonl", {}, "lists_truncated.jsonl:2: malformed JSON"),
    ],
)  # fmt: skip
def test_malformed_rows_name_the_file_row_and_problem(name, options, message):
    with pytest.raises(InputError) as error:
        read_lists(BAD / name, **options)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_datasets_folder_with_splits_is_an_error(tmp_path):
    import datasets

    split = datasets.Dataset.from_list([{"prompt": "p", "responses": ["a", "b"]}])
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(InputError, match="holds several splits"):
        read_lists(tmp_path / "dd")
    shutil.rmtree(tmp_path / "dd")


def test_candidates_only_from_jsonl(tmp_path):
    import datasets

    rows = [{"prompt_id": "a", "prompt": "p", "response": r, "score": s} for r, s in (("x", 1.0), ("y", 0.0))]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "c"))
    with pytest.raises(InputError, match="scored candidates are read from a JSONL file"):
        read_lists(tmp_path / "c")
