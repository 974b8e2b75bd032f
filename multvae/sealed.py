"""JSON records that carry their own content hash, so that a reader can tell a file its stage wrote
from one edited by hand afterwards (a value changed, a key added or dropped)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY = "content_sha256"


def _digest(payload: dict[str, Any]) -> str:
    body = {k: v for k, v in payload.items() if k != KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def seal(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` with its content hash as its last key."""
    return {**{k: v for k, v in payload.items() if k != KEY}, KEY: _digest(payload)}


def is_sealed(payload: dict[str, Any]) -> bool:
    """True when `payload` holds the hash of the rest of its content."""
    return payload.get(KEY) == _digest(payload)
