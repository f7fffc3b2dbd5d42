"""The list -> DPO pair conversion (used by benchmarks/trl_iterative.py): first and last response, short
lists skipped."""

from larpo.run.lists import preference_pairs


def test_pairs_take_first_and_last_and_skip_short_lists():
    lists = [
        {"prompt": "1+1=", "responses": ["2", "3", "4"], "reference_logps": [-1.0, -2.0, -3.0]},
        {"prompt": "2+2=", "responses": ["4"], "reference_logps": [-1.0]},
        {"prompt": "3+3=", "responses": [], "reference_logps": []},
        {"prompt": "5+5=", "responses": ["10", "11"]},
    ]
    assert preference_pairs(lists) == [
        {"prompt": "1+1=", "chosen": "2", "rejected": "4", "reference": [-1.0, -3.0]},
        {"prompt": "5+5=", "chosen": "10", "rejected": "11", "reference": None},
    ]
