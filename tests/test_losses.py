"""Hand-computed values for every objective.

Unless noted, beta = 1 and the reference log-probs are 0, so the implicit rewards equal the policy
log-probs: g = [2, 1, 0] for a list of three, best first. The expected numbers are worked out with
scalar `math` below, independently of the tensor code.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from larpo.losses import (
    contrastive_loss,
    delta_ndcg_weights,
    ipo_loss,
    lambdarank_loss,
    listmle_loss,
    pairwise_loss,
    rft_loss,
    simpo_loss,
)


def softplus(x: float) -> float:
    """-log sigmoid(-x) = log(1 + e^x)."""
    return math.log1p(math.exp(x))


def lse(*xs: float) -> float:
    return math.log(sum(math.exp(x) for x in xs))


G = torch.tensor([[2.0, 1.0, 0.0]])
ZERO = torch.zeros_like(G)


def test_pairwise_best_vs_last():
    """-log sigmoid(g_0 - g_2) = log(1 + e^-2) = 0.126928."""
    assert pairwise_loss(G, ZERO, beta=1.0).item() == pytest.approx(0.126928, abs=1e-6)


def test_contrastive_best_vs_all():
    """-(g_0 - log(e^2 + e^1 + e^0)) = log(11.107338) - 2 = 0.407606."""
    assert contrastive_loss(G, ZERO, beta=1.0).item() == pytest.approx(0.407606, abs=1e-6)


def test_lambdarank_sums_all_pairs():
    """Pairs (0,1), (1,2) have margin 1 and (0,2) margin 2: 2 log(1+e^-1) + log(1+e^-2) = 0.753452."""
    assert lambdarank_loss(G, ZERO, beta=1.0).item() == pytest.approx(0.753452, abs=1e-6)


def test_listmle_plackett_luce():
    """[lse(2,1,0) - 2] + [lse(1,0) - 1] + [lse(0) - 0] = 0.407606 + 0.313262 + 0 = 0.720868."""
    assert listmle_loss(G, ZERO, beta=1.0).item() == pytest.approx(0.720868, abs=1e-6)


def test_beta_and_reference_enter_as_beta_times_log_ratio():
    """policy [-1, -3], reference [-2, -2], beta 0.5: g = 0.5 * [1, -1], loss = log(1 + e^-1) = 0.313262."""
    policy, reference = torch.tensor([[-1.0, -3.0]]), torch.tensor([[-2.0, -2.0]])
    assert pairwise_loss(policy, reference, beta=0.5).item() == pytest.approx(softplus(-1.0), abs=1e-6)


def test_mean_over_rows_with_padding():
    """Row 1 is [2, 1, 0]; row 2 is [0, 3] plus a padded slot. Mean of the per-row losses."""
    policy = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 123.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    row2 = softplus(3.0)  # -log sigmoid(0 - 3)
    assert pairwise_loss(policy, torch.zeros_like(policy), 1.0, mask).item() == pytest.approx(
        (softplus(-2.0) + row2) / 2, abs=1e-6
    )
    assert listmle_loss(policy, torch.zeros_like(policy), 1.0, mask).item() == pytest.approx(
        ((lse(2.0, 1.0, 0.0) - 2.0) + (lse(1.0, 0.0) - 1.0) + row2) / 2, abs=1e-6
    )


def test_pairwise_matches_trl_dpo_sigmoid_formula():
    """TRL 1.16 DPOTrainer, loss_type "sigmoid" with label_smoothing 0 (trl/trainer/dpo_trainer.py):
    delta_score = (chosen - ref_chosen) - (rejected - ref_rejected); loss = -logsigmoid(beta * delta_score),
    averaged over the batch."""
    gen = torch.Generator().manual_seed(0)
    chosen, rejected = -20 * torch.rand(8, generator=gen), -20 * torch.rand(8, generator=gen)
    ref_chosen, ref_rejected = -20 * torch.rand(8, generator=gen), -20 * torch.rand(8, generator=gen)
    beta = 0.3
    delta_score = (chosen - ref_chosen) - (rejected - ref_rejected)
    trl_loss = (-F.logsigmoid(beta * delta_score)).mean()
    ours = pairwise_loss(
        torch.stack([chosen, rejected], 1), torch.stack([ref_chosen, ref_rejected], 1), beta=beta
    )
    torch.testing.assert_close(ours, trl_loss)


def test_scores_skip_tied_pairs():
    """Scores [1, 1, 0] on g = [2, 1, 0]: pair (0, 1) ties and is skipped.
    lambdarank: log(1+e^-2) + log(1+e^-1);
    contrastive: candidates 0 and 1 are both positives against the negative {2}, averaged:
    ([lse(2,0) - 2] + [lse(1,0) - 1]) / 2 = (0.126928 + 0.313262) / 2 = 0.220095;
    pairwise: the winner's place is shared by 0 and 1: (log(1+e^-2) + log(1+e^-1)) / 2, the same number;
    listmle: candidate 0 competes with {0, 2}, candidate 1 with {1, 2}: [lse(2,0) - 2] + [lse(1,0) - 1]."""
    scores = torch.tensor([[1.0, 1.0, 0.0]])
    assert lambdarank_loss(G, ZERO, 1.0, scores=scores).item() == pytest.approx(
        softplus(-2.0) + softplus(-1.0), abs=1e-6
    )
    two_positives = ((lse(2.0, 0.0) - 2.0) + (lse(1.0, 0.0) - 1.0)) / 2
    assert two_positives == pytest.approx(0.220095, abs=1e-6)
    assert contrastive_loss(G, ZERO, 1.0, scores=scores).item() == pytest.approx(two_positives, abs=1e-6)
    assert pairwise_loss(G, ZERO, 1.0, scores=scores).item() == pytest.approx(two_positives, abs=1e-6)
    assert listmle_loss(G, ZERO, 1.0, scores=scores).item() == pytest.approx(
        (lse(2.0, 0.0) - 2.0) + (lse(1.0, 0.0) - 1.0), abs=1e-6
    )


def test_all_tied_row_is_skipped_from_the_mean():
    """Row 2 ties everywhere, so the mean is over row 1 alone."""
    policy = torch.tensor([[2.0, 1.0, 0.0], [5.0, -5.0, 0.0]])
    scores = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    for loss, row1 in [(pairwise_loss, softplus(-2.0)), (contrastive_loss, lse(2.0, 1.0, 0.0) - 2.0)]:
        assert loss(policy, torch.zeros_like(policy), 1.0, scores=scores).item() == pytest.approx(
            row1, abs=1e-6
        )
        per_row = loss(policy, torch.zeros_like(policy), 1.0, scores=scores, reduction="none")
        assert per_row[1].item() == 0.0


def test_delta_ndcg_weights_by_hand():
    """Two candidates, model ranks them correctly: gains (2^1 - 1, 2^0 - 1) = (1, 0), discounts
    (1/log2 2, 1/log2 3) = (1, 0.630930), ideal DCG = 1: weight = 1 * (1 - 0.630930) = 0.369070.
    Reversing the model's order swaps the discounts but not the weight's magnitude."""
    mask = torch.ones(1, 2, dtype=torch.bool)
    weights = delta_ndcg_weights(torch.tensor([[1.0, 0.0]]), mask)
    assert weights[0, 0, 1].item() == pytest.approx(1 - 1 / math.log2(3), abs=1e-6)
    assert weights[0, 0, 1].item() == pytest.approx(0.369070, abs=1e-6)
    assert torch.equal(weights, delta_ndcg_weights(torch.tensor([[0.0, 1.0]]), mask))
    assert weights[0, 0, 0].item() == 0.0


def test_lambdarank_with_lambda_weights_by_hand():
    """g = [2, 1, 0], scores [2, 1, 0] -> relevance [1, 0.5, 0], gains [1, sqrt2 - 1, 0], the model's
    ranks are 1, 2, 3 so discounts [1, 1/log2 3, 1/2]; ideal DCG = 1 + (sqrt2 - 1)/log2 3.
    Loss = sum_{i<j} |G_i - G_j| |D_i - D_j| / IDCG * log(1 + e^-(g_i - g_j))."""
    gains = [1.0, math.sqrt(2) - 1, 0.0]
    disc = [1.0, 1 / math.log2(3), 0.5]
    idcg = gains[0] * disc[0] + gains[1] * disc[1]
    g = [2.0, 1.0, 0.0]
    expected = sum(
        abs(gains[i] - gains[j]) * abs(disc[i] - disc[j]) / idcg * softplus(-(g[i] - g[j]))
        for i in range(3)
        for j in range(i + 1, 3)
    )
    got = lambdarank_loss(G, ZERO, 1.0, scores=torch.tensor([[2.0, 1.0, 0.0]]), lambda_weights=True)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_length_normalize_divides_log_ratios_by_length():
    """policy [-4, -9], lengths [2, 3], reference 0, beta 1: g = [-2, -3], loss = log(1 + e^-1)."""
    policy = torch.tensor([[-4.0, -9.0]])
    lengths = torch.tensor([[2.0, 3.0]])
    got = pairwise_loss(policy, torch.zeros_like(policy), 1.0, lengths=lengths, length_normalize=True)
    assert got.item() == pytest.approx(softplus(-1.0), abs=1e-6)


def test_nll_weight_adds_per_token_nll_of_best():
    """Same list as above with nll_weight 0.5: plus 0.5 * 4 / 2 = 1.0."""
    policy = torch.tensor([[-4.0, -9.0]])
    lengths = torch.tensor([[2.0, 3.0]])
    base = pairwise_loss(policy, torch.zeros_like(policy), 1.0)
    with_nll = pairwise_loss(policy, torch.zeros_like(policy), 1.0, lengths=lengths, nll_weight=0.5)
    assert (with_nll - base).item() == pytest.approx(1.0, abs=1e-6)


def test_nll_min_score_trains_the_nll_only_on_rows_whose_best_reaches_it():
    """Rows [-4, -9] (best score 1.0, lengths [2, 3]) and [-6, -1] (best score 0.7, lengths [3, 1]),
    nll_weight 1, threshold 1.0: only row 0's NLL, 4 / 2 = 2, averaged over both rows = 1.0 above the
    ranking term; without the threshold both rows count, (2 + 2) / 2 = 2.0."""
    policy = torch.tensor([[-4.0, -9.0], [-6.0, -1.0]], requires_grad=True)
    lengths = torch.tensor([[2.0, 3.0], [3.0, 1.0]])
    scores = torch.tensor([[1.0, 0.2], [0.7, 0.1]])
    ranking = contrastive_loss(policy, torch.zeros_like(policy), 1.0, scores=scores, lengths=lengths)
    gated = contrastive_loss(policy, torch.zeros_like(policy), 1.0, scores=scores, lengths=lengths,
                             nll_weight=1.0, nll_min_score=1.0)  # fmt: skip
    every = contrastive_loss(
        policy, torch.zeros_like(policy), 1.0, scores=scores, lengths=lengths, nll_weight=1.0
    )
    assert (gated - ranking).item() == pytest.approx(1.0, abs=1e-6)
    assert (every - ranking).item() == pytest.approx(2.0, abs=1e-6)
    (grad,) = torch.autograd.grad(gated - ranking, policy)
    assert grad.flatten().tolist() == pytest.approx([-0.25, 0.0, 0.0, 0.0])  # d/d logp_00 of -(logp/2)/2


@pytest.mark.parametrize("loss", [pairwise_loss, contrastive_loss, lambdarank_loss, listmle_loss, ipo_loss])
def test_nll_min_score_leaves_the_ranking_term_alone(loss):
    """A threshold no row reaches removes the whole NLL term and nothing else."""
    policy, scores = torch.tensor([[-4.0, -9.0, -5.0]]), torch.tensor([[0.9, 0.1, 0.5]])
    kwargs = {"scores": scores, "lengths": torch.tensor([[2.0, 3.0, 1.0]])}
    plain = loss(policy, torch.zeros_like(policy), 0.5, **kwargs)
    gated = loss(policy, torch.zeros_like(policy), 0.5, **kwargs, nll_weight=3.0, nll_min_score=1.0)
    assert gated.item() == pytest.approx(plain.item(), abs=1e-6)
    with pytest.raises(ValueError, match="needs `scores`"):
        loss(policy, torch.zeros_like(policy), 0.5, nll_weight=1.0, nll_min_score=1.0)


def test_rft_with_nll_min_score_imitates_only_rows_that_reach_it():
    """RFT on a graded reward with threshold 1.0 is RFT on the exactly correct rows: row 0 alone, 4 / 2;
    without it row 1's 6 / 2 counts too, (2 + 3) / 2."""
    policy = torch.tensor([[-4.0, -9.0], [-6.0, -1.0]])
    lengths = torch.tensor([[2.0, 3.0], [2.0, 1.0]])
    scores = torch.tensor([[1.0, 0.0], [0.8, 0.3]])
    assert rft_loss(policy, None, lengths=lengths, scores=scores, nll_min_score=1.0).item() == pytest.approx(
        2.0
    )
    assert rft_loss(policy, None, lengths=lengths, scores=scores).item() == pytest.approx(2.5)
    assert rft_loss(policy, None, lengths=lengths, scores=scores, nll_min_score=0.5).item() == pytest.approx(
        2.5
    )
    per_row = rft_loss(policy, None, lengths=lengths, scores=scores, nll_min_score=1.0, reduction="none")
    assert per_row.tolist() == pytest.approx([2.0, 0.0])
    assert (
        rft_loss(policy, None, lengths=lengths, scores=scores, nll_min_score=1.0, reduction="sum").item()
        == 2.0
    )


def test_simpo_by_hand():
    """avg log-probs [-2, -3], beta 2, gamma 0.5: -log sigmoid(2 * 1 - 0.5) = log(1 + e^-1.5)."""
    policy, lengths = torch.tensor([[-4.0, -9.0]]), torch.tensor([[2.0, 3.0]])
    assert simpo_loss(policy, None, 2.0, lengths=lengths, gamma=0.5).item() == pytest.approx(
        softplus(-1.5), abs=1e-6
    )
    with pytest.raises(ValueError, match="lengths"):
        simpo_loss(policy, None, 2.0)


def test_ipo_by_hand():
    """log-ratio margin h = (-1 - -2) - (-3 - -2) = 2, beta 0.1: (2 - 5)^2 = 9."""
    policy, reference = torch.tensor([[-1.0, -3.0]]), torch.tensor([[-2.0, -2.0]])
    assert ipo_loss(policy, reference, 0.1).item() == pytest.approx(9.0, abs=1e-5)


def test_rft_averages_over_candidates_tied_for_best():
    """Scores [1, 1, 0]: candidates 0 and 1 are both best: mean of 4/2 and 9/3 = 2.5."""
    policy, lengths = torch.tensor([[-4.0, -9.0, -1.0]]), torch.tensor([[2.0, 3.0, 1.0]])
    scores = torch.tensor([[1.0, 1.0, 0.0]])
    assert rft_loss(policy, None, lengths=lengths, scores=scores).item() == pytest.approx(2.5, abs=1e-6)


def test_rft_is_per_token_nll_of_best_only():
    """Rows [-4, -9] (lengths [2, 3]) and [-6, -1] (lengths [3, 1]): mean of 4/2 and 6/3 = 2."""
    policy = torch.tensor([[-4.0, -9.0], [-6.0, -1.0]])
    lengths = torch.tensor([[2.0, 3.0], [3.0, 1.0]])
    assert rft_loss(policy, None, lengths=lengths).item() == pytest.approx(2.0, abs=1e-6)
    assert rft_loss(policy, None).item() == pytest.approx(5.0, abs=1e-6)  # per sequence without lengths


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.tensor([[True, False, False]]), "at least 2"),
        (torch.tensor([[True, False, True]]), "padding only at row ends"),
    ],
)
def test_bad_masks_are_rejected(mask, message):
    with pytest.raises(ValueError, match=message):
        listmle_loss(G, ZERO, 1.0, mask)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="reference_logps must have the shape"):
        pairwise_loss(G, torch.zeros(1, 2))


def test_unknown_reduction_is_rejected():
    with pytest.raises(ValueError, match="reduction"):
        pairwise_loss(G, ZERO, reduction="max")
