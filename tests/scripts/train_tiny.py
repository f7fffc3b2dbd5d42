"""Train a tiny model on fixed lists and save its weights; run alone or under `accelerate launch`.

Usage: python tests/scripts/train_tiny.py OUT_FILE BATCH_SIZE GRAD_ACCUM
"""

import os
import sys

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.helpers import arithmetic_lists, tiny_model_and_tokenizer  # noqa: E402

from larpo.distributed import end_launched_process  # noqa: E402
from larpo.trainer import (
    ListwiseConfig,  # noqa: E402
    ListwiseTrainer,  # noqa: E402
)


def main() -> None:
    out, batch_size, accumulation = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    model, tokenizer = tiny_model_and_tokenizer()
    initial = torch.cat([p.detach().flatten() for p in model.parameters()])
    args = ListwiseConfig(
        output_dir=os.path.dirname(out), objective="listmle", beta=0.1, learning_rate=5e-3,
        per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation, num_train_epochs=2,
        logging_steps=1, use_cpu=True, disable_tqdm=True, seed=0, report_to="none", dataloader_pin_memory=False,
    )  # fmt: skip
    trainer = ListwiseTrainer(model, args, arithmetic_lists(tokenizer, 8, 4), processing_class=tokenizer)
    trainer.train()
    # FSDP shards the parameters: gather the full state dict (a collective: every process takes part)
    state = trainer.accelerator.get_state_dict(trainer.model)
    weights = torch.cat(
        [state[name].detach().flatten() for name, _ in model.named_parameters() if name in state]
    )
    if trainer.accelerator.is_main_process:
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        processes = trainer.accelerator.num_processes
        engine = "fsdp" if trainer.is_fsdp_enabled else "ddp" if processes > 1 else "none"
        torch.save({"losses": losses, "weights": weights, "initial": initial, "processes": processes,
                    "engine": engine}, out)  # fmt: skip
    end_launched_process()  # not through the interpreter's teardown, which can abort a gloo rank


if __name__ == "__main__":
    main()
