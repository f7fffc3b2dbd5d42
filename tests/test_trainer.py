import copy
import math

import pytest
import torch

from larpo.data import ListCollator
from larpo.evaluation.metrics import implicit_rewards, ranking_stats
from larpo.logprobs import list_logps
from larpo.losses import OBJECTIVES
from larpo.trainer import ListwiseConfig, ListwiseTrainer, add_reference_logps
from tests.helpers import arithmetic_lists, tiny_model_and_tokenizer


def config(tmp_path, **overrides):
    settings = dict(
        output_dir=str(tmp_path),
        objective="contrastive",
        beta=0.1,
        learning_rate=5e-3,
        per_device_train_batch_size=4,
        num_train_epochs=3,
        logging_steps=1,
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        report_to="none",
    )
    settings.update(overrides)
    return ListwiseConfig(**settings)


@torch.no_grad()
def loss_and_accuracy(model, dataset, args, collator):
    """Objective value and ranking accuracy of `model` on the whole dataset, reference from the data."""
    model.eval()
    batch = collator(list(dataset))
    policy, lengths = list_logps(model, batch)
    objective = OBJECTIVES[args.objective]
    reference = None if objective.reference_free else batch["reference_logps"]
    loss = objective(
        policy, reference, args.beta, batch["list_mask"], scores=batch["scores"], lengths=lengths
    )
    rewards = implicit_rewards(policy, batch["reference_logps"], args.beta, batch["list_mask"])
    return loss.item(), ranking_stats(rewards, batch["list_mask"], batch["scores"])["ranking_accuracy"]


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_training_lowers_loss_and_raises_ranking_accuracy(tmp_path, name):
    model, tokenizer = tiny_model_and_tokenizer()
    args = config(tmp_path, objective=name, beta=1.0 if name == "simpo" else 0.1)
    collator = ListCollator(pad_token_id=tokenizer.pad_token_id)
    data = add_reference_logps(model, ListwiseTrainer.as_dataset(arithmetic_lists(tokenizer, 8, 4)), collator)
    before = loss_and_accuracy(model, data, args, collator)
    assert before[1] < 0.75  # a random model ranks near chance

    ListwiseTrainer(model, args, data, processing_class=tokenizer).train()
    after = loss_and_accuracy(model, data, args, collator)
    assert after[0] < before[0] - 0.01
    assert after[1] > before[1] + 0.1


def test_logs_ranking_metrics_per_step(tmp_path):
    model, tokenizer = tiny_model_and_tokenizer()
    trainer = ListwiseTrainer(model, config(tmp_path, num_train_epochs=1), arithmetic_lists(tokenizer, 8, 4))
    trainer.train()
    steps = [h for h in trainer.state.log_history if "loss" in h]
    assert len(steps) == 2  # 8 lists / batch 4
    for entry in steps:
        assert 0.0 <= entry["ranking_accuracy"] <= 1.0
        assert set(f"rewards/rank_{k}" for k in range(4)) <= set(entry)
        assert entry["margin"] == pytest.approx(entry["rewards/rank_0"] - entry["rewards/rank_3"], abs=1e-6)


def final_weights(trainer):
    trainer.train()
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def test_gradient_accumulation_matches_large_batch(tmp_path):
    """batch 4 x accumulation 1 and batch 1 x accumulation 4 take the same optimizer steps."""
    model, tokenizer = tiny_model_and_tokenizer()
    data = arithmetic_lists(tokenizer, 8, 4)
    big = ListwiseTrainer(copy.deepcopy(model), config(tmp_path / "a", num_train_epochs=2), data)
    small = ListwiseTrainer(
        copy.deepcopy(model),
        config(
            tmp_path / "b", num_train_epochs=2, per_device_train_batch_size=1, gradient_accumulation_steps=4
        ),
        data,
    )
    torch.testing.assert_close(final_weights(big), final_weights(small), atol=1e-5, rtol=1e-4)


def test_precomputed_reference_equals_live_reference_model(tmp_path):
    model, tokenizer = tiny_model_and_tokenizer()
    data = arithmetic_lists(tokenizer, 4, 3)
    precomputed = ListwiseTrainer(copy.deepcopy(model), config(tmp_path / "a", objective="listmle"), data)
    assert "reference_logps" in precomputed.train_dataset.column_names
    live = ListwiseTrainer(
        copy.deepcopy(model),
        config(tmp_path / "b", objective="listmle"),
        data,
        ref_model=copy.deepcopy(model),
    )
    assert "reference_logps" not in live.train_dataset.column_names
    torch.testing.assert_close(final_weights(precomputed), final_weights(live), atol=1e-5, rtol=1e-4)


def test_reference_required_when_precompute_is_off(tmp_path):
    model, tokenizer = tiny_model_and_tokenizer()
    with pytest.raises(ValueError, match="needs reference log-probs"):
        ListwiseTrainer(
            model, config(tmp_path, precompute_reference_logps=False), arithmetic_lists(tokenizer, 2, 2)
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"objective": "dpo"}, "unknown objective 'dpo'"),
        ({"objective": "listmle", "objective_options": {"lambda_weights": True}}, "does not take option"),
        ({"beta": 0.0}, "beta must be positive"),
        ({"objective_options": {"nll_weight": 1.0}}, "nll_weight as its own field"),
        ({"objective_options": {"nll_min_score": 1.0}}, "nll_min_score as its own field"),
        ({"nll_min_score": 1.0}, "set nll_weight > 0"),
        ({"nll_min_score": 1.0, "nll_weight": 1.0, "use_scores": False}, "needs use_scores"),
        ({"logprob_chunk_size": -1}, "'logprob_chunk_size' must be auto or an integer >= 0, got -1"),
        ({"logprob_chunk_size": "some"}, "'logprob_chunk_size' must be auto or an integer >= 0, got 'some'"),
        ({"shared_prefix": "maybe"}, "'shared_prefix' must be true, false or auto, got 'maybe'"),
    ],
)
def test_config_rejects_bad_settings(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **overrides)


@pytest.mark.parametrize("bf16", [False, True])
def test_chunked_log_probs_train_the_same_weights(tmp_path, bf16):
    """logprob_chunk_size changes memory, not results: same losses and weights after training, also under
    bf16 autocast (the chunked LM head must run under the autocast the model's forward runs under)."""
    trained = []
    for chunk in (0, 5):
        model, tokenizer = tiny_model_and_tokenizer()
        args = config(tmp_path / str(chunk), num_train_epochs=1, logprob_chunk_size=chunk, bf16=bf16)
        trainer = ListwiseTrainer(model, args, arithmetic_lists(tokenizer, 8, 4), processing_class=tokenizer)
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        trained.append((losses, [p.detach().clone() for p in model.parameters()]))
    (plain_losses, plain_weights), (chunked_losses, chunked_weights) = trained
    assert len(plain_losses) == 2
    if bf16:  # bf16 rounding differs between the chunk shapes; Adam's normalised steps amplify it in weights
        assert chunked_losses == pytest.approx(plain_losses, abs=2e-3)
        return
    assert chunked_losses == pytest.approx(plain_losses, abs=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(plain_weights, chunked_weights, strict=True))
    assert not torch.equal(plain_weights[0], tiny_model_and_tokenizer()[0].model.embed_tokens.weight)


def test_bf16_training_starts_exactly_at_its_precomputed_reference(tmp_path):
    """The reference pass runs under the autocast training uses, so before the first update every implicit
    reward is 0: margin 0 and the pairwise loss log 2 (in fp32 the reference would differ by bf16 rounding)."""
    model, tokenizer = tiny_model_and_tokenizer()
    args = config(tmp_path, objective="pairwise", bf16=True, max_steps=1, learning_rate=1e-9)
    trainer = ListwiseTrainer(model, args, arithmetic_lists(tokenizer, 8, 2), processing_class=tokenizer)
    trainer.train()
    first = trainer.state.log_history[0]
    assert first["margin"] == 0.0
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-7)


def test_trainer_gates_the_nll_term_by_the_best_score(tmp_path):
    """With nll_min_score above every list's best score the NLL term trains nothing: the same weights as
    nll_weight 0; below it, the NLL term changes them."""
    trained = {}
    for name, settings in {"no_nll": {}, "gated_out": {"nll_weight": 1.0, "nll_min_score": 10.0},
                           "every_list": {"nll_weight": 1.0}}.items():  # fmt: skip
        model, tokenizer = tiny_model_and_tokenizer()
        args = config(tmp_path / name, num_train_epochs=1, **settings)
        ListwiseTrainer(model, args, arithmetic_lists(tokenizer, 8, 4), processing_class=tokenizer).train()
        trained[name] = [p.detach().clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(trained["no_nll"], trained["gated_out"], strict=True))
    assert not all(
        torch.allclose(a, b) for a, b in zip(trained["no_nll"], trained["every_list"], strict=True)
    )


def verifier_lists(tokenizer):
    """Lists as a binary verifier leaves them: some with a right answer first (1.0 above 0.0), some
    all wrong (every score 0.0: nothing to rank, nothing to imitate), one all right (imitated)."""
    lists = arithmetic_lists(tokenizer, 9, 4)
    for number, example in enumerate(lists):
        kind = ("ranked", "all_wrong", "all_wrong", "all_right")[number % 4] if number else "ranked"
        example["scores"] = {"ranked": [1.0, 0.0, 0.0, 0.0], "all_wrong": [0.0] * 4, "all_right": [1.0] * 4}[
            kind
        ]
    return lists


def trained_with_and_without_skipping(tmp_path, make_lists, **settings):
    """Train a fresh tiny model on ``make_lists(tokenizer)`` with ``skip_inert_lists`` off, then on. Returns
    the initial weights, each training's final weights and the sequences each training's passes ran
    (counted at the model's forward, after the reference pass), keyed by the setting."""
    trained, sequences = {}, {}
    for skip in (False, True):
        model, tokenizer = tiny_model_and_tokenizer()
        initial = [p.detach().clone() for p in model.parameters()]
        seen = []

        def count(module, args, kwargs, seen=seen):
            seen.append(len(kwargs["input_ids"]))

        args = config(tmp_path / str(skip), skip_inert_lists=skip, **settings)
        trainer = ListwiseTrainer(model, args, make_lists(tokenizer), processing_class=tokenizer)
        model.register_forward_pre_hook(count, with_kwargs=True)  # training's passes, not the reference's
        trainer.train()
        trained[skip] = [p.detach().clone() for p in model.parameters()]
        sequences[skip] = sum(seen)
    for plain, skipped in zip(trained[False], trained[True], strict=True):
        torch.testing.assert_close(skipped, plain, rtol=1e-5, atol=1e-6)
    return initial, trained, sequences


@pytest.mark.parametrize("batch_size", [1, 3])
def test_skipping_inert_lists_trains_the_same_weights_with_fewer_sequences(tmp_path, batch_size):
    """An all-wrong list cannot change a step: skipping its forward pass leaves every update the same
    (the optimizer still steps on a batch of them, and such a list still counts in the batch mean)."""
    initial, trained, sequences = trained_with_and_without_skipping(
        tmp_path, verifier_lists, per_device_train_batch_size=batch_size, num_train_epochs=2, nll_weight=1.0,
        nll_min_score=1.0,
    )  # fmt: skip
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(initial, trained[True], strict=True))
    if batch_size == 1:  # a batch of one inert list still runs it: the step needs a forward
        assert sequences[True] == sequences[False]
    else:
        assert sequences[True] < sequences[False]


def graded_lists(tokenizer):
    """Lists as a graded reward leaves them: ties at the top and bottom and candidates in between, one
    list all wrong (inert) and one all right (imitated)."""
    rows = ([1.0, 0.5, 0.5, 0.0], [1.0, 1.0, 0.5, 0.0], [0.5, 0.25, 0.0, 0.0], [0.0] * 4, [1.0] * 4,
            [0.75, 0.5, 0.25, 0.0])  # fmt: skip
    lists = arithmetic_lists(tokenizer, 12, 4)
    for number, example in enumerate(lists):
        example["scores"] = list(rows[number % len(rows)])
    return lists


@pytest.mark.parametrize(("name", "candidates"), [("pairwise", 28), ("rft", 18), ("contrastive", 40)])
def test_training_computes_only_the_candidates_its_objective_reads(tmp_path, name, candidates):
    """pairwise reads each list's best and worst (ties included), rft its best; the trainer runs only those
    of the lists that can train and reaches the same weights as computing every candidate (48 sequences:
    12 lists of 4). Per 6 lists: pairwise 2 + 3 + 3 + 0 + 4 + 2, rft 1 + 2 + 1 + 0 + 4 + 1 (the all-right
    list's candidates are all best), contrastive 4 for each of the 5 lists that can train. No shared prefix:
    one pass per candidate, none per prompt."""
    _, _, sequences = trained_with_and_without_skipping(
        tmp_path, graded_lists, objective=name, per_device_train_batch_size=3, num_train_epochs=1,
        nll_weight=1.0, nll_min_score=1.0, shared_prefix=False,
    )  # fmt: skip
    assert sequences == {False: 48, True: candidates}


@pytest.mark.parametrize("name", ["rft", "simpo"])
def test_a_reference_free_objective_runs_no_reference_pass(tmp_path, name, monkeypatch):
    """Without a reference column a reference-free objective trains as it does with one, and the trainer
    computes none for it, even to log its metrics (beta * log pi then)."""
    import larpo.trainer.trainer as trainer_module

    model, tokenizer = tiny_model_and_tokenizer()
    lists = ListwiseTrainer.as_dataset(arithmetic_lists(tokenizer, 8, 4))
    collator = ListCollator(pad_token_id=tokenizer.pad_token_id)
    with_column = add_reference_logps(copy.deepcopy(model), lists, collator)
    args = {"objective": name, "beta": 1.0 if name == "simpo" else 0.1}
    given = ListwiseTrainer(copy.deepcopy(model), config(tmp_path / "a", **args), with_column)

    def no_reference_pass(*args, **kwargs):
        raise AssertionError("a reference pass for a reference-free objective")

    monkeypatch.setattr(trainer_module, "add_reference_logps", no_reference_pass)
    without = ListwiseTrainer(copy.deepcopy(model), config(tmp_path / "b", **args), lists)
    assert "reference_logps" not in without.train_dataset.column_names
    torch.testing.assert_close(final_weights(without), final_weights(given), atol=1e-6, rtol=1e-5)
    margins = [h["margin"] for h in without.state.log_history if "margin" in h]
    assert margins and all(math.isfinite(m) for m in margins)


def test_the_reference_pass_skips_the_lists_that_cannot_train(tmp_path):
    """Precomputed reference log-probs cover only the lists training reads: a binary verifier's all-wrong
    lists (nothing to rank, nothing imitated) get none, the others a full pass's values, and training
    reaches a full pass's weights."""
    model, tokenizer = tiny_model_and_tokenizer()
    lists = verifier_lists(tokenizer)
    settings = {
        "nll_weight": 1.0,
        "nll_min_score": 1.0,
        "num_train_epochs": 1,
        "per_device_train_batch_size": 3,
    }
    collator = ListCollator(pad_token_id=tokenizer.pad_token_id)
    full = add_reference_logps(copy.deepcopy(model), ListwiseTrainer.as_dataset(lists), collator)
    skipping = ListwiseTrainer(copy.deepcopy(model), config(tmp_path / "a", **settings), lists)
    given = ListwiseTrainer(copy.deepcopy(model), config(tmp_path / "b", **settings), full)
    computed = list(skipping.train_dataset["reference_logps"])
    all_wrong = [set(x["scores"]) == {0.0} for x in lists]
    assert [values is None for values in computed] == all_wrong
    assert 0 < sum(all_wrong) < len(lists)
    for values, expected in zip(computed, full["reference_logps"], strict=True):
        if values is not None:
            assert values == pytest.approx(expected, abs=1e-6)
    torch.testing.assert_close(final_weights(skipping), final_weights(given), atol=1e-6, rtol=1e-5)


def test_a_list_that_can_train_without_reference_log_probs_is_an_error(tmp_path):
    """A reference column may leave out only lists that cannot train; one that can is named."""
    model, tokenizer = tiny_model_and_tokenizer()
    lists = verifier_lists(tokenizer)
    collator = ListCollator(pad_token_id=tokenizer.pad_token_id)
    reference = add_reference_logps(model, ListwiseTrainer.as_dataset(lists), collator)["reference_logps"]
    settings = {"nll_weight": 1.0, "nll_min_score": 1.0}
    inert_left_out = [{**x, "reference_logps": None if number == 1 else values}
                      for number, (x, values) in enumerate(zip(lists, reference, strict=True))]  # fmt: skip
    assert set(lists[1]["scores"]) == {0.0}
    ListwiseTrainer(copy.deepcopy(model), config(tmp_path / "a", **settings), inert_left_out)
    trainable_left_out = [{**x, "reference_logps": None if number in (0, 3) else values}
                          for number, (x, values) in enumerate(zip(lists, reference, strict=True))]  # fmt: skip
    with pytest.raises(ValueError, match=r"lists \[0, 3\] can train but have no reference_logps"):
        ListwiseTrainer(copy.deepcopy(model), config(tmp_path / "b", **settings), trainable_left_out)
