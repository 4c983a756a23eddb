"""Validation of the names and paths users choose: one place, so every face rejects the same input."""

from __future__ import annotations

import re

from registry.errors import InvalidInput

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,255}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,127}$")
_VERSION_LIKE = re.compile(r"^[vV]\d+$")
_KEY = re.compile(r"^[\w./\- :]{1,250}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_PATH = 1024


def label(value: str, *, what: str, field: str, max_length: int = 256) -> str:
    """Free-form stored names (experiment, run, user, token): 1-``max_length`` characters, none of them a
    control character (U+0000-U+001F, U+007F): those break log lines, terminals and HTTP headers that
    show the name, and PostgreSQL cannot store NUL. Raises InvalidInput."""
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise InvalidInput(f"{what} must be 1-{max_length} characters", field=field)
    if _CONTROL.search(value):
        raise InvalidInput(f"{what} {value!r} contains a control character (U+0000-U+001F or U+007F)", field=field)
    return value


def model_name(name: str) -> str:
    """Model and artifact names: letters, digits, ``_ . - space``; no ``/`` or ``@`` (used in references)."""
    # fullmatch: ``$`` alone would accept a trailing newline.
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name) or name != name.strip():
        raise InvalidInput(
            f"invalid name {name!r}: use 1-256 letters, digits, '_', '.', '-' or spaces, "
            "starting with a letter or digit",
            field="name",
        )
    return name


def alias(name: str) -> str:
    """The alias as stored: lower case (like MLflow's aliases), so ``Production`` is ``production`` and no
    look-alike can escape a protection or gate policy. Alias names start with a letter; ``latest`` and
    ``v<digits>`` are reserved for version references. Raises InvalidInput stating the rule."""
    # fullmatch: ``$`` alone would accept a trailing newline.
    if not isinstance(name, str) or not _ALIAS.fullmatch(name):
        raise InvalidInput(
            f"invalid alias {name!r}: use a letter followed by up to 127 letters, digits, '_' or '-'",
            field="alias",
        )
    lowered = name.lower()
    if lowered == "latest" or _VERSION_LIKE.fullmatch(lowered):
        raise InvalidInput(f"alias {name!r} is reserved (it reads as a version reference)", field="alias")
    return lowered


def key(value: str, *, what: str = "key") -> str:
    """Param, metric and tag keys."""
    if not isinstance(value, str) or not _KEY.fullmatch(value) or ".." in value.split("/"):
        raise InvalidInput(
            f"invalid {what} {value!r}: use 1-250 letters, digits, '_', '-', '.', ' ', ':' or '/'",
            field=what,
        )
    return value


def artifact_path(path: str, *, allow_empty: bool = False) -> str:
    """A relative POSIX path inside a run or version: no ``..``, no absolute paths, backslashes or control
    characters (a name with one cannot be sent back in a Content-Disposition header)."""
    if not isinstance(path, str):
        raise InvalidInput("artifact path must be a string", field="path")
    if path in ("", "."):
        if allow_empty:
            return ""
        raise InvalidInput("artifact path is empty", field="path")
    if "\\" in path:
        raise InvalidInput(f"artifact path {path!r} contains a backslash", field="path")
    if _CONTROL.search(path):
        raise InvalidInput(
            f"artifact path {path!r} contains a control character (U+0000-U+001F or U+007F)", field="path"
        )
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
