"""The candidate store and atomic writes: round trips, torn and corrupt lines, type errors, atomic rewrites."""

import json
import os
import re

import pytest

from larpo.io import atomic_write_json, atomic_write_text
from larpo.store import CandidateRecord, CandidateStore, StoreError, read_records, write_records_atomic


def record(i: int, *, iteration: int = 0, score: float | None = None, **extra) -> CandidateRecord:
    return CandidateRecord(
        prompt_id=f"p{i}",
        prompt=f"prompt {i}",
        response=f"résponse {i}\nline two",
        score=score,
        iteration=iteration,
        temperature=0.8,
        **extra,
    )


def line_of(rec: CandidateRecord) -> bytes:
    return (rec.to_json() + "\n").encode()


def test_record_json_round_trip_and_optional_fields():
    full = record(1, score=2.5, reference_logp=-12.25, source="policy")
    assert CandidateRecord.from_json(full.to_json()) == full
    bare = record(2)
    data = json.loads(bare.to_json())
    assert data["score"] is None
    assert "reference_logp" not in data and "source" not in data
    assert CandidateRecord.from_json(bare.to_json()) == bare
    assert "\n" not in full.to_json()


def test_record_coerces_ints_to_float():
    rec = CandidateRecord.from_json(
        '{"prompt_id": "a", "prompt": "q", "response": "r", "score": 3, "iteration": 1, "temperature": 1}'
    )
    assert rec.score == 3.0 and isinstance(rec.score, float)
    assert isinstance(rec.temperature, float)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prompt_id", 7, "field 'prompt_id' must be a str, got int"),
        ("iteration", "1", "field 'iteration' must be an int, got str"),
        ("iteration", True, "field 'iteration' must be an int, got bool"),
        ("score", "high", "field 'score' must be a number, got str"),
        ("score", False, "field 'score' must be a number, got bool"),
        ("temperature", None, "field 'temperature' must be a number, got NoneType"),
        ("reference_logp", float("nan"), "field 'reference_logp' must be finite"),
        ("source", 3, "field 'source' must be a str, got int"),
    ],
)
def test_type_errors_name_field(field, value, message):
    data = json.loads(record(0).to_json())
    data[field] = value
    with pytest.raises(StoreError, match=f"^f.jsonl:4: {message}"):
        CandidateRecord.from_dict(data, where="f.jsonl:4")


def test_unknown_and_missing_fields():
    data = json.loads(record(0).to_json())
    with pytest.raises(StoreError, match=r"unknown field\(s\) \['scor'\]"):
        CandidateRecord.from_dict({**data, "scor": 1.0})
    del data["score"]
    with pytest.raises(StoreError, match=r"missing field\(s\) \['score'\]"):
        CandidateRecord.from_dict(data)


def test_write_and_read_round_trip(tmp_path):
    path = tmp_path / "c.jsonl"
    records = [record(0), record(1), record(2, score=-1.5, source="random")]
    write_records_atomic(path, records)
    assert read_records(path) == records
    assert path.read_bytes().count(b"\n") == 3  # one line per record, the newlines of a response escaped


def test_type_error_in_file_names_file_and_line(tmp_path):
    path = tmp_path / "c.jsonl"
    bad = json.loads(record(1).to_json()) | {"iteration": 1.5}
    path.write_bytes(line_of(record(0)) + (json.dumps(bad) + "\n").encode() + line_of(record(2)))
    with pytest.raises(
        StoreError, match=rf"^{re.escape(str(path))}:2: field 'iteration' must be an int, got float"
    ):
        read_records(path)


@pytest.mark.parametrize("torn", [b'{"prompt_id": "p9", "pro', b"\x00\x00\x00", b"{}"])
def test_a_torn_tail_is_an_error_naming_its_line_and_leaves_the_file_alone(tmp_path, torn):
    path = tmp_path / "c.jsonl"
    original = line_of(record(0)) + line_of(record(1)) + torn
    path.write_bytes(original)
    with pytest.raises(StoreError, match=rf"^{re.escape(str(path))}:3: torn last line \({len(torn)} bytes"):
        read_records(path)
    assert path.read_bytes() == original


def test_invalid_final_complete_line_is_torn(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(line_of(record(0)) + b'{"prompt_id": \n')
    with pytest.raises(StoreError, match=":2: torn last line"):
        read_records(path)


@pytest.mark.parametrize("tail", [b"", b'{"torn'])
def test_mid_file_corruption_is_always_an_error(tmp_path, tail):
    path = tmp_path / "c.jsonl"
    original = line_of(record(0)) + line_of(record(1)) + b"not json\n" + line_of(record(3)) + tail
    path.write_bytes(original)
    with pytest.raises(StoreError, match=rf"^{re.escape(str(path))}:3: malformed line \(corruption"):
        read_records(path)
    assert path.read_bytes() == original


def test_bad_line_before_torn_tail_is_corruption(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(line_of(record(0)) + b"garbage\n" + b'{"to')
    with pytest.raises(StoreError, match=":2: malformed line"):
        read_records(path)


def test_write_records_atomic_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "c.jsonl"
    write_records_atomic(path, [record(0), record(1)])
    scored = [record(0, score=1.0), record(1, score=0.25)]
    write_records_atomic(path, scored)
    assert read_records(path) == scored
    assert os.listdir(tmp_path) == ["c.jsonl"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_json(path, {"iteration": 1, "done": [0]})
    with pytest.raises(ValueError, match="Out of range float"):
        atomic_write_json(path, {"loss": float("nan")})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"iteration": 1, "done": [0]}
    atomic_write_text(path, "ünïcode\n")
    assert path.read_text(encoding="utf-8") == "ünïcode\n"
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_candidate_store(tmp_path):
    store = CandidateStore(tmp_path / "run")
    assert store.iterations() == []
    assert store.path(3) == tmp_path / "run" / "candidates" / "iter_3.jsonl"
    it0 = [record(0, iteration=0), record(1, iteration=0)]
    it2 = [record(5, iteration=2)]
    store.replace(2, it2)
    store.replace(0, it0)
    (store.directory / ".iter_0.jsonl.abc.tmp").write_text("")
    (store.directory / "iter_x.jsonl").write_text("")
    assert store.iterations() == [0, 2]
    assert store.read(0) == it0
    assert store.read_all() == it0 + it2
    assert store.read_all([2, 0]) == it2 + it0
    rescored = [record(0, iteration=0, score=0.5)]
    store.replace(0, rescored)
    assert store.read(0) == rescored


def test_candidate_store_rejects_wrong_iteration(tmp_path):
    store = CandidateStore(tmp_path)
    with pytest.raises(StoreError, match="record of iteration 1 written to iteration 0"):
        store.replace(0, [record(0, iteration=1)])
    for bad in (-1, True, "1"):
        with pytest.raises(StoreError, match="non-negative int"):
            store.path(bad)
    assert not store.path(0).exists()


def _counting_reads(monkeypatch) -> list[str]:
    """Record the files ``CandidateStore`` parses from disk."""
    import larpo.store

    parsed: list[str] = []
    original = larpo.store.read_records

    def counting(path):
        parsed.append(os.path.basename(path))
        return original(path)

    monkeypatch.setattr(larpo.store, "read_records", counting)
    return parsed


def test_store_rereads_a_file_only_when_it_changed_on_disk(tmp_path, monkeypatch):
    parsed = _counting_reads(monkeypatch)
    store = CandidateStore(tmp_path)
    first = [record(0, score=0.0), record(1, score=0.0)]
    store.replace(0, first)
    assert store.read(0) == first and store.read_all([0, 0]) == first + first
    assert parsed == []  # written by the store: kept parsed
    returned = store.read(0)
    returned.append(record(9))  # a caller's list is its own
    assert store.read(0) == first
    # replaced from outside (another process): same size, new records
    outside = [record(0, score=1.0), record(1, score=1.0)]
    assert len(line_of(outside[0])) == len(line_of(first[0]))
    write_records_atomic(store.path(0), outside)
    assert store.read(0) == outside
    assert store.read(0) == outside
    assert parsed == ["iter_0.jsonl"]
    store.path(0).unlink()
    with pytest.raises(FileNotFoundError):
        store.read(0)


def test_store_keeps_at_most_cache_bytes_of_files_parsed(tmp_path, monkeypatch):
    import larpo.store

    parsed = _counting_reads(monkeypatch)
    store = CandidateStore(tmp_path)
    for s in range(3):
        store.replace(s, [record(s, iteration=s)])
    monkeypatch.setattr(larpo.store, "CACHE_BYTES", 2 * store.path(0).stat().st_size)
    store.replace(2, [record(2, iteration=2)])  # the newest two stay: iterations 1 and 2
    assert [store.read(s)[0].prompt_id for s in (1, 2, 0)] == ["p1", "p2", "p0"]
    assert parsed == ["iter_0.jsonl"]
