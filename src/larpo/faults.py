"""Named fault-injection points for crash tests.

``LARPO_KILL_AT=name#n`` makes the process SIGKILL itself the n-th time (1-based) it passes the point
``name``. Unset (always, outside tests), a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_passes: Counter[str] = Counter()


def fault_point(name: str) -> None:
    """Mark a point where a crash must be survivable (see the module docstring)."""
    target = os.environ.get("LARPO_KILL_AT")
    if not target:
        return
    _passes[name] += 1
    if target == f"{name}#{_passes[name]}":
        os.kill(os.getpid(), signal.SIGKILL)
