import itertools
import math

import pytest
import torch

from larpo.evaluation.metrics import (
    kendall_tau,
    mean_pass_at_k,
    ndcg_at_k,
    pass_at_k,
    ranking_stats,
    scale_to_unit,
    win_rate,
)


def brute_force_pass_at_k(n, c, k):
    """Fraction of all k-subsets of n samples (c correct) that hold at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_matches_enumeration_of_all_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_edge_cases():
    assert pass_at_k(10, 3, 10) == 1.0  # N = n: any correct sample is in the set
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # N = 1: the plain fraction
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert 0.0 < pass_at_k(1000, 1, 500) == pytest.approx(0.5)  # stable for large n
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="correct count"):
        pass_at_k(4, 5, 1)
    assert mean_pass_at_k([4, 4], [0, 4], 2) == 0.5


def test_ndcg_by_hand():
    """relevance [3, 2, 0] ranked [2, 3, 0] (predicted puts item 1 first):
    DCG = 2/log2(2) + 3/log2(3) + 0 = 2 + 1.892789 = 3.892789; IDCG = 3 + 2/log2(3) = 4.261860."""
    assert ndcg_at_k([3, 2, 0], [0.5, 0.9, 0.1]) == pytest.approx(
        (2 + 3 / math.log2(3)) / (3 + 2 / math.log2(3))
    )
    assert ndcg_at_k([3, 2, 0], [3, 2, 1]) == 1.0
    assert ndcg_at_k([3, 2, 0], [0.5, 0.9, 0.1], k=1) == pytest.approx(2 / 3)


def test_ndcg_with_tied_predictions_averages_gains():
    """Predictions tie for the two top slots: each gets the mean gain (3 + 2) / 2 = 2.5.
    DCG = 2.5 * (1 + 1/log2 3) = 4.077324; IDCG = 3 + 2/log2 3 = 4.261860."""
    expected = 2.5 * (1 + 1 / math.log2(3)) / (3 + 2 / math.log2(3))
    assert ndcg_at_k([3, 2, 0], [1.0, 1.0, 0.0]) == pytest.approx(expected)
    assert ndcg_at_k([0, 0], [1, 2]) == 1.0  # nothing relevant: any order is ideal
    with pytest.raises(ValueError, match="non-negative"):
        ndcg_at_k([-1, 0], [1, 2])


def test_kendall_tau_by_hand_with_ties():
    """x = [1, 2, 3, 4], y = [1, 3, 2, 4]: 5 concordant, 1 discordant pair -> (5 - 1) / 6 = 2/3.
    With ties, tau-b: x = [1, 1, 2], y = [1, 2, 3]: P = 2, Q = 0, ties only in x: 1 -> 2 / sqrt(3 * 2)."""
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau([1, 1, 1], [1, 2, 3]) is None


def test_win_rate_counts_ties_as_half_and_scaling():
    assert win_rate([1.0, 0.5, 0.0, 2.0], [0.0, 0.5, 1.0, 1.0]) == pytest.approx(2.5 / 4)
    assert scale_to_unit([2.0, 4.0, 3.0]) == [0.0, 1.0, 0.5]
    assert scale_to_unit([1.0, 1.0]) == [0.0, 0.0]


def test_ranking_accuracy_counts_pairs_and_is_absent_without_any():
    mask = torch.ones(2, 3, dtype=torch.bool)
    rewards = torch.tensor([[0.3, 0.1, 0.2], [0.0, 0.5, 0.9]])
    tied = torch.zeros(2, 3)
    assert "ranking_accuracy" not in ranking_stats(rewards, mask, tied)  # no pair: no accuracy, not 0
    scores = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # 2 pairs, both in row 0, both right
    assert ranking_stats(rewards, mask, scores)["ranking_accuracy"] == 1.0
