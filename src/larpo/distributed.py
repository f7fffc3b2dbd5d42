"""Several processes under ``accelerate launch``: the process state and a check of the launch.

On GPUs, ``accelerate launch`` (``examples/accelerate/ddp.yaml``) starts one process per GPU in an NCCL
group. On CPU the same launch forms a gloo group only when ``ACCELERATE_USE_CPU=true``, as transformers'
Trainer decides; otherwise each process would work alone, which ``check_launch`` refuses.
"""

from __future__ import annotations

import os
from datetime import timedelta

from accelerate import PartialState
from accelerate.utils import parse_flag_from_env

from larpo.errors import InputError

WAIT_TIMEOUT = timedelta(hours=12)
"""How long a process waits for the others: in ``larpo run`` the main process alone builds lists,
computes reference log-probs and evaluates while the others wait (the usual 30 minutes can be too short)."""


def process_state() -> PartialState:
    """This process's accelerate state: one process, or one of several under ``accelerate launch``."""
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=WAIT_TIMEOUT)


def check_launch(processes: int, hint: str = "") -> None:
    """Refuse a launch of more processes than the group holds (each would work alone)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > processes:  # e.g. accelerate launch on a machine without GPUs
        raise InputError(
            f"launched as {launched} processes, but each would train alone (no GPU found): on CPU "
            f"export ACCELERATE_USE_CPU=true{hint}"
        )


def check_data_parallel() -> None:
    """Refuse an FSDP or DeepSpeed launch: ``larpo run`` saves the weights its main process holds, which
    these engines shard (tested: DDP only)."""
    for flag, engine in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if parse_flag_from_env(flag):
            raise InputError(
                f"larpo run trains with DDP only, not {engine}: launch it with examples/accelerate/ddp.yaml, "
                "or use larpo train"
            )
