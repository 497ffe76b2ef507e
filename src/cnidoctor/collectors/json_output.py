"""Decoding the JSON that `ip -j`, `bridge -j` and `nft -j` print.

orjson decodes a node's tables (hundreds of small objects) two to three times faster than
the standard library: on a 2,000-node snapshot that is most of the time before any rule
runs. Its errors are `json.JSONDecodeError`s (with `msg` and `pos`), so callers catch
the standard exception.
"""

from __future__ import annotations

from typing import Any

import orjson


def loads(text: str) -> Any:
    """Like `json.loads`; raises json.JSONDecodeError (a ValueError) on anything not JSON."""
    return orjson.loads(text)
