"""The ``registry`` command. Configuration is read lazily: ``registry --help`` touches nothing."""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Annotated

import pydantic
import typer
from rich.markup import escape

from registry import errors
from registry.cli import (
    aliases,
    audit,
    automations,
    backup,
    ci,
    experiments,
    gates,
    gc,
    models,
    monitor,
    runs,
    server,
    tokens,
    versions,
    webhooks,
)
from registry.cli._common import EXIT_FAILED, EXIT_USAGE, describe_os_error, err, exit_code, hint_for
from registry.cli._help import make_readable

app = typer.Typer(
    name="registry",
    help="Modelkeep: versioned models, their lineage, aliases and promotion history.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(server.serve)
app.add_typer(server.db_app, name="db")
app.add_typer(tokens.app, name="token")
app.add_typer(models.app, name="models")
app.add_typer(versions.app, name="versions")
app.command("push")(versions.push)
app.command("pull")(versions.pull)
app.command("promote")(aliases.promote)
app.command("rollback")(aliases.rollback)
app.add_typer(gates.app, name="gate")
app.add_typer(ci.app, name="ci")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(automations.app, name="automations")
app.add_typer(monitor.app, name="monitor")
app.add_typer(runs.app, name="runs")
app.add_typer(experiments.app, name="experiments")
app.command("audit")(audit.audit)
app.command("export")(backup.export)
app.command("import")(backup.import_archive)
app.command("gc")(gc.gc)


def version_text() -> str:
    try:
        number = metadata.version("modelkeep")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        from registry import __version__ as number
    return f"registry (modelkeep) {number}"


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(version_text() + "\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Modelkeep: versioned models, their lineage, aliases and promotion history."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps every expected failure to a message and a documented exit code."""
    command = typer.main.get_command(app)
    make_readable(command)
    try:
        result = command.main(args=argv, prog_name="registry", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err.print("aborted")
        return EXIT_FAILED
    except typer.TyperException as exc:
        # Typer's (vendored) click usage errors: they print themselves; UsageError's exit code is 2.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    except errors.RegistryError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False)
        if hint := hint_for(exc):
            err.print(f"[dim]hint: {escape(hint)}[/dim]", highlight=False)
        return exit_code(exc)
    except OSError as exc:
        # Commands name their file arguments (file_argument); this is the net under the rest: a local file
        # problem is the caller's to fix (exit 2), anything else (no file named) a failure (exit 1).
        err.print(f"[red]error:[/red] {escape(describe_os_error(exc))}", highlight=False)
        return EXIT_USAGE if exc.filename is not None else EXIT_FAILED
    except UnicodeDecodeError as exc:  # the same net for text files that are not text
        err.print(f"[red]error:[/red] a file given is not UTF-8 text ({escape(exc.reason)} at byte {exc.start})")
        return EXIT_USAGE
    except pydantic.ValidationError as exc:
        if exc.title != "Settings":
            raise
        for problem in exc.errors():
            name = "MODELKEEP_" + "_".join(str(part) for part in problem["loc"]).upper()
            problem_text = f"{name}={problem['input']!r}: {problem['msg']}"
            err.print(f"[red]error:[/red] {escape(problem_text)}", highlight=False)
        err.print("[dim]hint: fix or unset that variable (flags of the command win over it)[/dim]", highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())
