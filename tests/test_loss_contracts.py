"""Contracts every registered objective must keep (the list comes from the registry)."""

import inspect

import pytest
import torch

from larpo.losses import (
    OBJECTIVES,
    check_options,
    get_objective,
    has_nll_term,
    pairwise_loss,
    read_candidates,
    rows_with_gradient,
)

ALL = sorted(OBJECTIVES)
RANKING = sorted(name for name, entry in OBJECTIVES.items() if entry.kind == "ranking")


def random_lists(batch=4, size=5, seed=0, scale=10.0):
    gen = torch.Generator().manual_seed(seed)
    policy = -scale * torch.rand(batch, size, generator=gen)
    reference = -scale * torch.rand(batch, size, generator=gen)
    lengths = torch.randint(1, 20, (batch, size), generator=gen).float()
    scores = torch.randn(batch, size, generator=gen).sort(dim=1, descending=True).values
    return policy, reference, lengths, scores


def call(name, policy, reference, mask=None, **options):
    return get_objective(name)(policy, reference, 0.5, mask, **options)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("with_scores", [False, True])
def test_masked_list_equals_truncated_list(name, with_scores):
    policy, reference, lengths, scores = random_lists()
    counts = [5, 3, 2, 4]
    mask = torch.arange(5).unsqueeze(0) < torch.tensor(counts).unsqueeze(1)
    extra = {"scores": scores} if with_scores else {}
    padded = call(name, policy, reference, mask, lengths=lengths, reduction="none", **extra)
    for row, count in enumerate(counts):
        cut = slice(row, row + 1), slice(0, count)
        extra_row = {"scores": scores[cut]} if with_scores else {}
        alone = call(name, policy[cut], reference[cut], lengths=lengths[cut], reduction="none", **extra_row)
        torch.testing.assert_close(padded[row], alone[0])


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("garbage", [1e30, float("inf"), float("-inf"), float("nan")])
def test_padded_slots_get_zero_gradient_and_change_nothing(name, garbage):
    policy, reference, lengths, scores = random_lists()
    mask = torch.arange(5).unsqueeze(0) < torch.tensor([[5], [3], [2], [4]])
    clean = call(name, policy, reference, mask, lengths=lengths, scores=scores)

    dirty_policy = torch.where(mask, policy, garbage).requires_grad_()
    dirty_reference = torch.where(mask, reference, garbage)
    dirty_lengths = torch.where(mask, lengths, garbage)
    dirty_scores = torch.where(mask, scores, garbage)
    loss = call(name, dirty_policy, dirty_reference, mask, lengths=dirty_lengths, scores=dirty_scores)
    loss.backward()
    torch.testing.assert_close(loss, clean)
    assert torch.isfinite(dirty_policy.grad).all()
    assert (dirty_policy.grad[~mask] == 0).all()


@pytest.mark.parametrize("name", ALL)
def test_permuting_padded_garbage_changes_nothing(name):
    policy, reference, lengths, scores = random_lists(batch=1, size=6)
    mask = torch.tensor([[True, True, True, False, False, False]])
    garbage = torch.tensor([[0.0, 0.0, 0.0, 7e3, -1e4, 3.0]])
    shuffled = garbage[:, [0, 1, 2, 5, 3, 4]]
    first = call(name, torch.where(mask, policy, garbage), reference, mask, lengths=lengths)
    second = call(
        name,
        torch.where(mask, policy, shuffled),
        torch.where(mask, reference, -shuffled),
        mask,
        lengths=lengths,
    )
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", RANKING)
def test_two_candidates_equal_dpo(name):
    policy, reference, lengths, _ = random_lists(batch=6, size=2)
    torch.testing.assert_close(call(name, policy, reference), pairwise_loss(policy, reference, 0.5))
    assert call(name, policy, reference).item() > 0


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("magnitude", [1e4, 1e6])
def test_finite_loss_and_gradient_at_large_magnitudes(name, magnitude):
    policy, reference, lengths, scores = random_lists(scale=magnitude)
    policy = (policy * torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0])).requires_grad_()
    loss = call(name, policy, reference, lengths=lengths, scores=scores, nll_weight=0.1)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(policy.grad).all()


@pytest.mark.parametrize("name", RANKING)
def test_loss_drops_when_policy_moves_toward_reranker_order(name):
    """Adding a reward that follows the reranker's order (best highest) lowers every ranking loss."""
    policy, reference, _, _ = random_lists()
    toward_order = torch.linspace(1.0, -1.0, 5).unsqueeze(0)
    assert call(name, policy + toward_order, reference) < call(name, policy, reference)


@pytest.mark.parametrize("name", ["contrastive", "lambdarank", "listmle"])
def test_order_of_tied_candidates_does_not_matter(name):
    policy, reference, _, _ = random_lists(batch=1, size=5)
    scores = torch.tensor([[3.0, 2.0, 2.0, 2.0, 0.0]])
    permuted = [0, 3, 1, 2, 4]  # shuffle the three tied candidates
    original = call(name, policy, reference, scores=scores)
    shuffled = call(name, policy[:, permuted], reference[:, permuted], scores=scores[:, permuted])
    torch.testing.assert_close(original, shuffled)


def test_registry_lists_every_objective_with_metadata():
    assert set(RANKING) == {"pairwise", "contrastive", "lambdarank", "listmle"}
    assert {n for n, e in OBJECTIVES.items() if e.reference_free} == {"simpo", "rft"}
    assert "lambda_weights" in get_objective("lambdarank").options
    assert "lambda_weights" not in get_objective("listmle").options


def test_unknown_objective_and_option_name_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown objective 'dpo'; valid: contrastive, ipo, lambdarank"):
        get_objective("dpo")
    with pytest.raises(ValueError, match=r"does not take option\(s\) lambda_weights"):
        check_options("listmle", {"lambda_weights": True})
    check_options("lambdarank", {"lambda_weights": True, "nll_weight": 0.1})


def test_options_read_from_the_source_are_those_of_the_imported_function():
    """Built-in objectives are registered by path; their options (read without importing torch) are the
    keyword parameters of the function itself."""
    for name, entry in OBJECTIVES.items():
        parameters = list(inspect.signature(entry.fn).parameters)
        assert parameters[:4] == ["policy_logps", "reference_logps", "beta", "mask"], name
        assert entry.options == tuple(parameters[4:]), name


INERT = sorted(name for name, entry in OBJECTIVES.items() if entry.inert_tied_rows)


def test_rows_with_gradient_are_the_ranked_and_the_imitated_lists():
    mask = torch.tensor([[True, True, True], [True, True, True], [True, True, True], [True, True, False]])
    scores = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 9.0]])
    assert rows_with_gradient(mask, scores).tolist() == [True, False, False, False]
    imitated = rows_with_gradient(mask, scores, nll_term=True)
    assert imitated.tolist() == [True, True, True, True]
    gated = rows_with_gradient(mask, scores, nll_term=True, nll_min_score=1.0)
    assert gated.tolist() == [True, False, True, False]  # the padded 9.0 is no score
    assert rows_with_gradient(mask).all()  # without scores every list is ordered


@pytest.mark.parametrize("name", INERT)
@pytest.mark.parametrize("gate", [None, 1.0], ids=["no_nll", "nll_gated"])
def test_a_row_outside_rows_with_gradient_gets_no_gradient(name, gate):
    """The rule the trainer's skip rests on: a list outside ``rows_with_gradient`` gets an exactly zero
    gradient, whatever its log-probs, and the loss does not change when they do."""
    policy, reference, lengths, _ = random_lists(batch=5, size=4, seed=3)
    scores = torch.tensor(
        [[1.0, 0, 0, 0], [0, 0, 0, 0], [1.0, 1, 1, 1], [0.5, 0.5, 0.5, 0.5], [2.0, 1, 0, 0]]
    )
    options = {"lengths": lengths, "scores": scores}
    if gate is not None:  # the NLL term on the lists whose best scores 1.0 or more (rft's loss is that term)
        options.update(nll_min_score=gate, **({} if name == "rft" else {"nll_weight": 1.0}))
    nll_term = has_nll_term(name, options.get("nll_weight", 0.0))
    trained = rows_with_gradient(scores >= 0, scores, nll_term=nll_term, nll_min_score=gate)
    expected = [True, False, True, False, True] if nll_term else [True, False, False, False, True]
    if name == "rft" and gate is None:
        expected = [True] * 5  # every list's best imitated
    assert trained.tolist() == expected

    leaf = policy.clone().requires_grad_()
    loss = call(name, leaf, reference, **options)
    loss.backward()
    assert (leaf.grad[~trained] == 0).all()
    assert leaf.grad[trained].abs().sum() > 0
    moved = torch.where(trained.unsqueeze(1), policy, policy - 7.0)
    torch.testing.assert_close(call(name, moved, reference, **options), loss.detach())


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("lambda_weights", [False, True])
def test_scores_count_only_up_to_a_positive_affine_map_per_list(name, lambda_weights):
    """Every objective reads a list's scores through their order (and lambdarank's weights through their
    min-max scaling), so group-normalising them, as GRPO's advantages do, changes neither loss nor
    gradient. Only ``nll_min_score`` reads raw scores."""
    if lambda_weights and "lambda_weights" not in get_objective(name).options:
        pytest.skip("no lambda weights")
    policy, reference, lengths, _ = random_lists(batch=3, size=5, seed=5)
    scores = torch.tensor([[3.0, 2.0, 2.0, 0.5, 0.0], [1.0, 1.0, 0.0, 0.0, 0.0], [0.9, 0.7, 0.2, 0.1, 0.0]])
    options = {"lengths": lengths, **({"lambda_weights": True} if lambda_weights else {})}
    mean = scores.mean(dim=1, keepdim=True)
    normalised = (scores - mean) / scores.std(dim=1, keepdim=True) * torch.tensor([[1.0], [5.0], [0.1]])

    def loss_and_gradient(list_scores):
        leaf = policy.clone().requires_grad_()
        loss = call(name, leaf, reference, scores=list_scores, **options)
        loss.backward()
        return loss.detach(), leaf.grad

    raw_loss, raw_gradient = loss_and_gradient(scores)
    group_loss, group_gradient = loss_and_gradient(normalised)
    torch.testing.assert_close(group_loss, raw_loss)
    torch.testing.assert_close(group_gradient, raw_gradient)
    if name in RANKING:  # a map that changes the order does change a ranking loss
        reversed_loss, _ = loss_and_gradient(-scores)
        assert not torch.isclose(reversed_loss, raw_loss)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("with_scores", [False, True])
@pytest.mark.parametrize("nll", [{}, {"nll_weight": 1.0}, {"nll_weight": 1.0, "nll_min_score": 0.5}])
def test_candidates_outside_the_registered_reads_change_nothing(name, with_scores, nll):
    """The trainer computes only the candidates of an objective's ``reads`` (zeros elsewhere): any values
    there must leave the loss and the gradient alone, with the NLL term on. Scores with ties at the top
    and bottom, so that tied best and worst candidates count as read."""
    if "nll_min_score" in nll and not with_scores:
        pytest.skip("nll_min_score needs scores")
    policy, reference, lengths, _ = random_lists(size=6)
    scores = torch.tensor([[2.0, 2.0, 1.0, 0.5, 0.0, 0.0], [1.0, 0.7, 0.6, 0.5, 0.4, 0.0],
                           [0.3, 0.2, 0.2, 0.1, 0.1, 0.1], [5.0, 4.0, 3.0, 3.0, 3.0, 1.0]])  # fmt: skip
    mask = torch.arange(6).unsqueeze(0) < torch.tensor([[6], [5], [6], [4]])
    extra = {"scores": scores} if with_scores else {}
    read = read_candidates(mask, extra.get("scores"), get_objective(name).reads)

    def loss_and_gradient(policy_values, reference_values, length_values):
        policy_values = policy_values.clone().requires_grad_()
        loss = call(name, policy_values, reference_values, mask, lengths=length_values, **extra, **nll)
        loss.backward()
        return loss.detach(), torch.where(read, policy_values.grad, 0.0)

    zero = torch.zeros(())
    expected = loss_and_gradient(policy, reference, lengths)
    only_read = loss_and_gradient(
        torch.where(read, policy, zero), torch.where(read, reference, zero), torch.where(read, lengths, zero)
    )
    torch.testing.assert_close(only_read, expected)
    if get_objective(name).reads != "all":
        assert (mask & ~read).any()  # the test leaves something out


def test_read_candidates_of_each_reads_value():
    """best_and_worst: every candidate tied with the top or the bottom score; best: those at the top;
    without scores, candidate 0 and the last real one."""
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    scores = torch.tensor([[1.0, 1.0, 0.5, 0.0], [0.5, 0.2, 0.2, 9.0]])
    assert read_candidates(mask, scores, "all").equal(mask)
    assert read_candidates(mask, scores, "best_and_worst").tolist() == [
        [True, True, False, True], [True, True, True, False]
    ]  # fmt: skip
    assert read_candidates(mask, scores, "best").tolist() == [
        [True, True, False, False],
        [True, False, False, False],
    ]
    assert read_candidates(mask, None, "best_and_worst").tolist() == [
        [True, False, False, True], [True, False, True, False]
    ]  # fmt: skip
    with pytest.raises(ValueError, match="reads must be"):
        read_candidates(mask, scores, "some")
