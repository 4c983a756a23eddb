"""`registry audit`: the audit log of token changes, protected-alias moves and gate policies (admins)."""

from __future__ import annotations

import json
from itertools import islice
from typing import Annotated, Any

import typer

from registry.cli._common import JsonOpt, TokenOpt, UrlOpt, client, emit, err, make_table, when


def audit(
    action: Annotated[
        str | None,
        typer.Option("--action", help="Only this action, e.g. token.created, gate_policy.set, alias.forced."),
    ] = None,
    after: Annotated[int, typer.Option("--after", help="Start after the entry with this id.", min=0)] = 0,
    limit: Annotated[int, typer.Option("--limit", help="Show at most N entries.", min=1)] = 100,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the audit log, oldest first (admin token).

    At most --limit entries; when more follow, the command that shows them is printed to stderr."""
    with client(url, token) as api:
        entries = list(islice(api.audit_log(action=action, after=after, page_size=min(limit + 1, 1000)), limit + 1))
    more = len(entries) > limit
    entries = entries[:limit]

    def table(rows: list[dict[str, Any]]) -> Any:
        return make_table(
            "Audit log",
            ["id", "when", "action", "actor", "target", "details"],
            (
                (
                    e["id"],
                    when(e["created_at"]),
                    e["action"],
                    e["actor"],
                    e["target"],
                    json.dumps(e["details"], sort_keys=True) if e["details"] else "",
                )
                for e in rows
            ),
            keep=[0, 2],
        )

    emit(entries, as_json, table)
    if more:
        again = ["registry audit", *([f"--action {action}"] if action else []), f"--after {entries[-1]['id']}"]
        err.print(f"more entries follow: {' '.join(again)}", highlight=False, markup=False)
