"""Which rows belong to one model: found by following foreign keys, plus one small table of rules."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.services.backup._common import BATCH, BLOBS, Key, key_in, primary_key, tables

BLOB_DIGEST_COLUMNS = (
    ("monitor_baselines", "digest"),
    ("monitor_buckets", "sample_digest"),
    ("monitor_checks", "report_digest"),
)
"""The only relationships a model export follows that are not foreign keys: these columns name blobs by
sha256 (the blob row under it, if any, goes into the archive with them). A rule naming a column that does
not exist is ignored here and fails a test."""


@dataclass(frozen=True)
class _Edge:
    child: Table
    child_cols: tuple[Column[Any], ...]
    parent: Table
    parent_cols: tuple[Column[Any], ...]
    owned: bool
    """The child row is deleted with its parent (``ON DELETE CASCADE``): it belongs to the parent."""


def _edges() -> list[_Edge]:
    found = []
    for table in tables():
        for fk in table.foreign_key_constraints:
            parents = tuple(element.column for element in fk.elements)
            owned = (fk.ondelete or "").upper() == "CASCADE"
            found.append(_Edge(table, tuple(fk.columns), parents[0].table, parents, owned))
        for table_name, column_name in BLOB_DIGEST_COLUMNS:
            if table.name == table_name and column_name in table.c:
                found.append(_Edge(table, (table.c[column_name],), BLOBS, (BLOBS.c.sha256,), False))
    return found


async def scope_of(session: AsyncSession, *, root: Table, key: Key) -> dict[str, set[Key]]:
    """Primary keys, per table, of the rows that belong with the ``root`` row, to a fixpoint:

    - rows *owned* by a selected row (their foreign key to it cascades on delete): a model's versions, tags,
      aliases, promotions, gate policies and runs; a version's files and tags; a run's params, metrics,
      tags, files and inputs; an artifact version's files;
    - rows a selected row *refers to*, so that every foreign key in the archive resolves: the run a version
      came from, its experiment, the artifact versions it consumed (and the runs that made them), the blobs.

    Refers-to edges are never walked backwards: the run a version came from does not pull in the other
    models registered from it, and a dataset does not pull in the other runs that consumed it. The rest
    (tokens, webhooks, deliveries, events, audit) refers to no model by foreign key and stays out.
    """
    edges = _edges()
    every = {t.name: t for t in tables()}
    # Only the columns the walk needs are held per row (keys and edge columns), never whole rows.
    needed = {id(c) for e in edges for c in (*e.child_cols, *e.parent_cols)}
    columns = {t.name: [c for c in t.columns if c.primary_key or id(c) in needed] for t in every.values()}
    selected: dict[str, dict[Key, dict[str, Any]]] = defaultdict(dict)

    def add(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pk, new = primary_key(table), []
        for row in rows:
            k = tuple(row[c.name] for c in pk)
            if k not in selected[table.name]:
                selected[table.name][k] = row
                new.append(row)
        return new

    async def fetch(table: Table, by: Sequence[Column[Any]], values: set[Key]) -> list[dict[str, Any]]:
        if list(by) == primary_key(table):  # rows selected already need no query
            values = {v for v in values if v not in selected[table.name]}
        ordered = sorted(values)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ordered), BATCH):
            query = select(*columns[table.name]).where(key_in(by, ordered[start : start + BATCH]))
            rows.extend(dict(r) for r in (await session.execute(query)).mappings())
        return rows

    frontier = {root.name: add(root, await fetch(root, primary_key(root), {key}))}
    while frontier:
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for edge in edges:
            for source, src, target, dst, walk in (
                (edge.parent, edge.parent_cols, edge.child, edge.child_cols, edge.owned),  # down to owned rows
                (edge.child, edge.child_cols, edge.parent, edge.parent_cols, True),  # up to referred rows
            ):
                rows = frontier.get(source.name)
                if walk and rows:
                    values = {v for r in rows if None not in (v := tuple(r[c.name] for c in src))}
                    found[target.name].extend(await fetch(target, dst, values))
        frontier = {name: new for name, rows in found.items() if (new := add(every[name], rows))}
    return {name: set(rows) for name, rows in selected.items()}
