"""The ``registry`` command. Configuration is read lazily: ``registry --help`` touches nothing."""

from __future__ import annotations

import sys

import pydantic
import typer

from registry import errors
from registry.cli import aliases, automations, gates, models, server, tokens, versions, webhooks
from registry.cli._common import EXIT_FAILED, EXIT_USAGE, err, exit_code, hint_for

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
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(automations.app, name="automations")


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps every expected failure to a message and a documented exit code."""
    try:
        result = app(args=argv, standalone_mode=False)
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
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        if hint := hint_for(exc):
            err.print(f"[dim]hint: {hint}[/dim]", highlight=False)
        return exit_code(exc)
    except pydantic.ValidationError as exc:
        if exc.title != "Settings":
            raise
        for problem in exc.errors():
            name = "MODELKEEP_" + "_".join(str(part) for part in problem["loc"]).upper()
            err.print(f"[red]error:[/red] {name}={problem['input']!r}: {problem['msg']}", highlight=False)
        err.print("[dim]hint: fix or unset that variable (flags of the command win over it)[/dim]", highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())
