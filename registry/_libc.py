"""The C library's functions that the standard library does not wrap (Linux only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any


def function(name: str) -> Any | None:
    """``name`` from the process's C library, or None off Linux or where that libc lacks it (e.g. musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
