"""Validation of the names and paths users choose: one place, so every face rejects the same input."""

from __future__ import annotations

import re

from registry.errors import InvalidInput

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,255}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,127}$")
_VERSION_LIKE = re.compile(r"^[vV]\d+$")
_KEY = re.compile(r"^[\w./\- :]{1,250}$")
MAX_PATH = 1024


def model_name(name: str) -> str:
    """Model and artifact names: letters, digits, ``_ . - space``; no ``/`` or ``@`` (used in references)."""
    if not isinstance(name, str) or not _MODEL_NAME.match(name) or name != name.strip():
        raise InvalidInput(
            f"invalid name {name!r}: use 1-256 letters, digits, '_', '.', '-' or spaces, "
            "starting with a letter or digit",
            field="name",
        )
    return name


def alias(name: str) -> str:
    """Alias names start with a letter; ``latest`` and ``v<digits>`` are reserved for version references."""
    if not isinstance(name, str) or not _ALIAS.match(name):
        raise InvalidInput(
            f"invalid alias {name!r}: use a letter followed by up to 127 letters, digits, '_' or '-'",
            field="alias",
        )
    if name.lower() == "latest" or _VERSION_LIKE.match(name):
        raise InvalidInput(f"alias {name!r} is reserved (it reads as a version reference)", field="alias")
    return name


def key(value: str, *, what: str = "key") -> str:
    """Param, metric and tag keys."""
    if not isinstance(value, str) or not _KEY.match(value) or ".." in value.split("/"):
        raise InvalidInput(
            f"invalid {what} {value!r}: use 1-250 letters, digits, '_', '-', '.', ' ', ':' or '/'",
            field=what,
        )
    return value


def artifact_path(path: str, *, allow_empty: bool = False) -> str:
    """A relative POSIX path inside a run or version: no ``..``, no absolute paths, NUL or backslashes."""
    if not isinstance(path, str):
        raise InvalidInput("artifact path must be a string", field="path")
    if path in ("", "."):
        if allow_empty:
            return ""
        raise InvalidInput("artifact path is empty", field="path")
    if "\x00" in path or "\\" in path:
        raise InvalidInput(f"artifact path {path!r} contains NUL or a backslash", field="path")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise InvalidInput(f"artifact path {path!r} is absolute: give a path relative to the run", field="path")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidInput(f"artifact path {path!r} leaves its folder ('..')", field="path")
    if not parts and not allow_empty:
        raise InvalidInput("artifact path is empty", field="path")
    clean = "/".join(parts)
    if len(clean) > MAX_PATH:
        raise InvalidInput(f"artifact path is longer than {MAX_PATH} characters", field="path")
    return clean
