"""Seeds derived from named parts, stable across processes and Python runs (unlike ``hash``)."""

from __future__ import annotations

import hashlib
from typing import Any


def hash_seed(*parts: Any, bits: int = 63) -> int:
    """A deterministic ``bits``-bit seed from any parts, joined with ``/`` and hashed with SHA-256."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> (64 - bits)
