"""What every CLI command shares: connection options, one renderer (rich or --json), error → exit code."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from registry import errors
from registry.client import RegistryClient
from registry.services import names

# Documented exit codes (README.md, "CLI exit codes").
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND = 0, 1, 2, 4
PROGRESS_MIN_BYTES = 8 * 1024 * 1024

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", envvar="MODELKEEP_URL", help="Registry URL.", show_default="http://127.0.0.1:5000"),
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="MODELKEEP_TOKEN", help="API token.", show_default=False)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (stable keys) instead of tables.")]


def exit_code(error: errors.RegistryError) -> int:
    if isinstance(error, errors.NotFound):
        return EXIT_NOT_FOUND
    if isinstance(error, errors.InvalidInput):
        return EXIT_USAGE
    return EXIT_FAILED


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    # Messages quote user input (paths, names, server details): escaped, so "[...]" in them is shown, not parsed.
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def describe_os_error(exc: OSError, path: Path | None = None) -> str:
    """``PATH: reason`` for a failed local file operation, naming the file the system refused if it differs."""
    reason = exc.strerror or str(exc)
    failed = os.fsdecode(exc.filename) if exc.filename is not None else None
    if path is None:
        return f"{failed}: {reason}" if failed else reason
    if failed and Path(failed) != path:
        return f"{path}: {reason} ({failed})"
    return f"{path}: {reason}"


@contextmanager
def file_argument(name: str, path: Path | None) -> Iterator[None]:
    """Reports a failure on the local file behind option or argument ``name`` as a message and exit 2.

    Wraps the code that reads or writes that file, so a missing folder, a folder where a file is expected,
    a permission or a non-UTF-8 text file ends the command with ``error: --report-md /x/r.md: ...``
    instead of a traceback."""
    try:
        yield
    except UnicodeDecodeError as exc:
        fail(f"{name} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})", EXIT_USAGE)
    except OSError as exc:
        fail(f"{name} {describe_os_error(exc, path)}", EXIT_USAGE)


def alias_option(value: str, option: str) -> str:
    """The alias as the server stores it (lower case); a malformed one is a usage error naming the rule.

    Checked here because some malformed names never reach the alias route: ``a/b`` or ``..`` change the
    request path, and the server would answer 404 for a route that does not exist."""
    try:
        return names.alias(value)
    except errors.InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint=option) from None


def writable_file(value: Path | None) -> Path | None:
    """Option callback for files the command writes: checked before the command does anything else, so
    a typo in a report path is reported before a gate run is recorded, not after."""
    if value is None:
        return None
    if value.is_dir():
        raise typer.BadParameter(f"{value} is a folder; name a file inside it")
    folder = value.parent
    if not folder.is_dir():
        raise typer.BadParameter(f"the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (value.exists() and not os.access(value, os.W_OK)):
        raise typer.BadParameter(f"cannot write {value}: permission denied")
    return value


def hint_for(error: errors.RegistryError) -> str | None:
    if isinstance(error, errors.Unauthenticated):
        return "pass --token or set MODELKEEP_TOKEN (an admin can run `registry token create NAME --role writer`)"
    if isinstance(error, errors.Forbidden):
        return "ask an admin for a token with a higher role"
    if error.code == "gate_policy_not_met":
        return "record a passing run with `registry gate run MODEL VERSION --spec SPEC --record`"
    if error.code == "alias_moved":
        return "check `registry versions show` for the alias' current holder, then retry with --expect"
    if error.code == "destination_not_empty":
        return "pass --force to replace the folder's contents with exactly this version (swapped in whole)"
    return None


def client(url: str | None, token: str | None) -> RegistryClient:
    return RegistryClient(url, token)


def emit(data: Any, as_json: bool, table: Callable[[Any], Table | str] | None = None) -> None:
    if as_json or table is None:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        return
    out.print(table(data))


def cell(value: Any) -> RenderableType:
    """A table cell: rich renderables as they are, anything else as plain text (names, reasons and
    descriptions come from users; read as markup, ``[x]`` would vanish and ``[/]`` would crash)."""
    if isinstance(value, Text | Table):
        return value
    return Text("" if value is None else str(value))


def when(iso: str | None) -> str | None:
    """A server timestamp, shorter for tables: ``2024-05-01 12:00:03Z`` (UTC), else as sent."""
    if not iso:
        return iso
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.utcoffset() == timedelta(0):
        return moment.strftime("%Y-%m-%d %H:%M:%SZ")
    return iso


def make_table(
    title: str | None, columns: Iterable[str], rows: Iterable[Iterable[Any]], *, keep: Iterable[int] = ()
) -> Table:
    """A rich table of plain-text cells. Columns numbered in ``keep`` (ids, names people copy) are never
    wrapped on a narrow terminal; the others give way."""
    table = Table(title=title and escape(title), title_justify="left", header_style="bold")
    kept = set(keep)
    for index, column in enumerate(columns):
        table.add_column(column, no_wrap=index in kept)
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    return table


@contextmanager
def transfer_progress(label: str) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """Yields (on_total, advance) callbacks; shows a rich bar only for large transfers on a terminal."""
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    )
    task = progress.add_task(label, total=None, visible=False)
    started = False

    def on_total(total: int) -> None:
        nonlocal started
        progress.update(task, total=total)
        if total >= PROGRESS_MIN_BYTES and err.is_terminal:
            progress.update(task, visible=True)
            progress.start()
            started = True

    def advance(n: int) -> None:
        progress.advance(task, n)

    try:
        yield on_total, advance
    finally:
        if started:
            progress.stop()
