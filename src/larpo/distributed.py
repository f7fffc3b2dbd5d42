"""Several processes under ``accelerate launch``: the process state, a check of the launch and its end.

On GPUs, ``accelerate launch`` (``examples/accelerate/ddp.yaml``) starts one process per GPU in an NCCL
group. On CPU the same launch forms a gloo group only when ``ACCELERATE_USE_CPU=true``, as transformers'
Trainer decides; otherwise each process would work alone, which ``check_launch`` refuses. A launched
process that has done its work ends through :func:`end_launched_process`, which leaves the group first.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
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


def leave_process_group() -> bool:
    """Destroy this process's default process group, if it joined one (never imports torch); whether it
    had one."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return False
    distributed.destroy_process_group()
    return True


def end_launched_process() -> None:
    """End a process that joined a process group, now, with exit code 0; return at once if it joined none.

    Call it when the process's work has succeeded. The group is destroyed, then what a normal exit does
    first is done here: non-daemon threads are joined, the ``atexit`` handlers run (logging and trackers
    flush) and the standard streams are flushed. The process then ends with ``os._exit`` instead of
    tearing the interpreter down. Why: a gloo group's worker threads outlive the group (DDP keeps a
    reference to it), and one that releases a finished collective's tensors while the interpreter is
    being torn down takes the GIL, which ends the thread inside C++ code: "terminate called without an
    active exception" (SIGABRT) in a rank whose work was done, and a failed launch. Under a CPU burner a
    2-process DDP program aborted so in 8 of 30 launches without destroying its group and in 1 of 30
    with it; without the interpreter's teardown the race cannot happen.
    """
    if not leave_process_group():
        return
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what the interpreter runs at exit; os._exit would skip them
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)
