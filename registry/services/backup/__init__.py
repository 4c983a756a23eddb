"""Backup and restore: a consistent archive of the whole registry or of one model, restorable into an empty
registry on either engine (SQLite ↔ PostgreSQL).

An archive is a tar file (gzip-compressed when its name ends in ``.gz``/``.tgz``) holding, in this order:

- ``manifest.json``: format version, the source's schema revision, ``created_at``, the scope, rows per
  table and the sha256 and size of every other member;
- ``tables/<name>.jsonl``: one JSON object per row, one file per table in dependency order
  (``Base.metadata.sorted_tables``: parents are restored before children);
- ``blobs/<sha256>``: the bytes of every blob the archived ``blobs`` rows list.

Tables come from the metadata, never from a list, so a table added later is archived with no change here.
Values are written by column type (see ``_common.encode_value``); floats are JSON numbers, and Python
writes the shortest text that reads back as the same double, so they round-trip exactly.

Export (``_export``) reads every row in one read transaction, so the archive is one consistent state while
the server keeps writing. Import (``_import``) verifies every member against the manifest, puts the blobs,
then inserts every row in one write transaction. The digests detect damage and truncation, not forgery:
keep archives where they cannot be replaced if that matters.
"""

from registry.services.backup._common import (
    ArchiveInvalid,
    BackupFailed,
    SchemaMismatch,
    TargetNotEmpty,
    decode_value,
    encode_value,
    head_revision,
    tables,
)
from registry.services.backup._export import Snapshot, Written, pin, snapshot, write_archive
from registry.services.backup._import import Manifest, Staged, check_empty, read_manifest, restore, stage
from registry.services.backup._scope import BLOB_DIGEST_COLUMNS, scope_of

__all__ = [
    "BLOB_DIGEST_COLUMNS",
    "ArchiveInvalid",
    "BackupFailed",
    "Manifest",
    "SchemaMismatch",
    "Snapshot",
    "Staged",
    "TargetNotEmpty",
    "Written",
    "check_empty",
    "decode_value",
    "encode_value",
    "head_revision",
    "pin",
    "read_manifest",
    "restore",
    "scope_of",
    "snapshot",
    "stage",
    "tables",
    "write_archive",
]
