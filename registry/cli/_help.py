"""Readable help pages: placeholders like TEXT, PATH and N instead of Typer's ``<str>``, flags without one.

Typer labels every parameter with its Python type (``--json <bool>``, ``model <str>``). One pass over the
finished command tree gives every option a placeholder (unless it names its own ``metavar``) and shows
arguments by their upper-case name only, so each command module stays free of per-option metavars.
"""

from __future__ import annotations

from typing import Any

from typer import Context
from typer.core import TyperArgument, TyperGroup, TyperOption

_BY_TYPE: dict[Any, str] = {str: "TEXT", int: "N", float: "NUMBER"}
_BY_PATH_KIND = {"file": "FILE", "directory": "DIR"}


class _NamedArgument(TyperArgument):
    """A positional argument shown as its upper-case name (``MODEL``); its help text says what it takes."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _placeholder(option: TyperOption) -> str:
    if option.is_flag:
        return ""
    # Typer's parameter description (typer.core, typer>=0.29): the annotation with Optional removed.
    described = option.type_descriptor
    if described.is_choice and described.choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in described.choices) + "]"
    if described.is_path:
        return _BY_PATH_KIND.get(described.path_type, "PATH")
    return _BY_TYPE.get(described.annotation, "VALUE")


def make_readable(command: Any) -> None:
    """Set placeholders on every option and argument of ``command`` and its subcommands (in place)."""
    # --help is made on first use and then kept (get_help_option caches it): make it now, to label it too.
    help_option = command.get_help_option(Context(command))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = _placeholder(param)
        elif isinstance(param, TyperArgument) and not isinstance(param, _NamedArgument):
            param.metavar = param.metavar or (param.name or "value").upper()
            # A class change, not a copy: click keeps the parameter objects it parses with.
            param.__class__ = _NamedArgument
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            make_readable(sub)
