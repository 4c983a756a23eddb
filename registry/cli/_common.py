"""What every CLI command shares: connection options, one renderer (rich or --json), error → exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from registry import errors
from registry.client import RegistryClient

# Documented exit codes (docs/cli.md).
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
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def hint_for(error: errors.RegistryError) -> str | None:
    if isinstance(error, errors.Unauthenticated):
        return "pass --token or set MODELKEEP_TOKEN (an admin can run `registry token create NAME --role writer`)"
    if isinstance(error, errors.Forbidden):
        return "ask an admin for a token with a higher role"
    if error.code == "gate_policy_not_met":
        return "record a passing run with `registry gate run MODEL VERSION --spec SPEC --record`"
    if error.code == "alias_moved":
        return "check `registry versions show` for the alias' current holder, then retry with --expect"
    return None


def client(url: str | None, token: str | None) -> RegistryClient:
    return RegistryClient(url, token)


def emit(data: Any, as_json: bool, table: Callable[[Any], Table | str] | None = None) -> None:
    if as_json or table is None:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        return
    out.print(table(data))


def make_table(title: str | None, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
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
