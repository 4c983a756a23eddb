"""Python SDK for the native REST API. The CLI and users' scripts both use it."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from registry import errors
from registry.client import _direct
from registry.client._folders import check_destination, make_staging, relative_paths, swap_in
from registry.client._http import HttpClient

CHUNK = 1024 * 1024
PUSH_ATTEMPTS = 3
RECLAIMED = {"blob_missing", "blob_reclaimed"}
"""Error codes of a version whose blobs a storage collection reclaimed during the push: upload and retry."""
Progress = Callable[[int], None]
"""Called with the number of bytes just transferred."""


@dataclass(frozen=True, slots=True)
class LocalFile:
    path: str
    """Relative POSIX path inside the pushed folder."""
    local: Path
    sha256: str
    size: int


def q(value: str) -> str:
    return quote(value, safe="")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def scan_folder(root: Path) -> list[LocalFile]:
    """Every regular file under ``root`` (or ``root`` itself if it is a file), hashed."""
    if root.is_file():
        return [LocalFile(path=root.name, local=root, sha256=sha256_file(root), size=root.stat().st_size)]
    if not root.is_dir():
        raise errors.InvalidInput(f"{root} is neither a file nor a folder")
    found: list[LocalFile] = []
    for dirpath, _dirs, filenames in os.walk(root):
        for filename in sorted(filenames):
            local = Path(dirpath) / filename
            if local.is_symlink() or not local.is_file():
                continue
            rel = local.relative_to(root).as_posix()
            found.append(LocalFile(path=rel, local=local, sha256=sha256_file(local), size=local.stat().st_size))
    if not found:
        raise errors.InvalidInput(f"{root} holds no files to push")
    return sorted(found, key=lambda f: f.path)


def _read_chunks(handle: BinaryIO, progress: Progress | None) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        if progress:
            progress(len(chunk))
        yield chunk


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """``MODEL@ALIAS`` → (model, alias, None); ``MODEL/VERSION`` → (model, None, version)."""
    if "@" in ref:
        model, _, alias = ref.rpartition("@")
        if model and alias:
            return model, alias, None
    elif "/" in ref:
        model, _, version = ref.rpartition("/")
        if model and version.isdigit() and int(version) > 0:
            return model, None, int(version)
    raise errors.InvalidInput(f"cannot read {ref!r}: use MODEL@ALIAS or MODEL/VERSION (for example fraud@production)")


DATA_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".pq": "application/vnd.apache.parquet",
    ".csv": "text/csv",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
}


def data_content_type(path: Path) -> str:
    """The content type of a data file, by its suffix (.parquet, .csv, .jsonl/.ndjson)."""
    found = DATA_TYPES.get(path.suffix.lower())
    if found is None:
        raise errors.InvalidInput(f"{path}: name a .parquet, .csv or .jsonl file (the suffix gives its format)")
    return found


class RegistryClient(HttpClient):
    direct: bool | None = None
    """Blob bytes straight to and from the registry's S3 bucket: None (the default) uses them where the
    registry offers them, False never (set once a registry said it offers none)."""

    # -- experiments and runs -------------------------------------------------------------------------
    def create_experiment(self, name: str, tags: dict[str, str] | None = None) -> dict[str, Any]:
        return dict(self.json("POST", "/api/v1/experiments", json={"name": name, "tags": tags or {}}))

    def create_run(self, **fields: Any) -> dict[str, Any]:
        return dict(self.json("POST", "/api/v1/runs", json={k: v for k, v in fields.items() if v is not None}))

    def get_experiment(self, experiment: int | str) -> dict[str, Any]:
        """An experiment by id, or by name (``NotFound`` when no experiment has that name)."""
        if isinstance(experiment, int) or experiment.isdigit():
            return dict(self.json("GET", f"/api/v1/experiments/{int(experiment)}"))
        for found in self.list_experiments():
            if found["name"] == experiment:
                return found
        raise errors.NotFound(f"experiment {experiment!r} does not exist", code="experiment_not_found")

    def list_experiments(self, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every experiment, oldest first, following pages."""
        after = -1
        while True:
            page = self.json("GET", "/api/v1/experiments", params={"after": after, "limit": page_size})
            yield from page["items"]
            if not page.get("next") or not page["items"]:
                return
            after = int(page["next"])

    def get_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/api/v1/runs/{q(run_id)}"))

    def list_runs(self, *, experiment_id: int | None = None, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Runs, newest start first (of one experiment if given), each with its params, tags and latest metrics.

        The list route names runs by id; each run is then read in full."""
        offset = 0
        while True:
            params: dict[str, Any] = {"limit": page_size, "offset": offset}
            if experiment_id is not None:
                params["experiment_id"] = experiment_id
            page = self.json("GET", "/api/v1/runs", params=params)
            for item in page["items"]:
                yield self.get_run(item) if isinstance(item, str) else dict(item)
            if not page.get("next") or not page["items"]:
                return
            offset = int(page["next"])

    def update_run(self, run_id: str, **fields: Any) -> dict[str, Any]:
        body = {k: v for k, v in fields.items() if v is not None}
        return dict(self.json("PATCH", f"/api/v1/runs/{q(run_id)}", json=body))

    def log_batch(
        self,
        run_id: str,
        *,
        params: dict[str, Any] | None = None,
        metrics: list[dict[str, Any]] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        body = {
            "params": {k: str(v) for k, v in (params or {}).items()},
            "metrics": metrics or [],
            "tags": tags or {},
        }
        self.request("POST", f"/api/v1/runs/{q(run_id)}/log-batch", json=body)

    def metric_history(self, run_id: str, key: str, page_size: int = 25_000) -> list[dict[str, Any]]:
        """Every point of one metric, following pages."""
        points: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.json(
                "GET", f"/api/v1/runs/{q(run_id)}/metrics/{key}", params={"limit": page_size, "offset": offset}
            )
            points += page["items"]
            if not page.get("next"):
                return points
            offset = int(page["next"])

    def record_input(self, run_id: str, artifact: str, version: int, context: str | None = None) -> dict[str, Any]:
        body = {"artifact": artifact, "version": version, "context": context}
        return dict(self.json("POST", f"/api/v1/runs/{q(run_id)}/inputs", json=body))

    # -- bytes ------------------------------------------------------------------------------------------
    def upload_artifact(self, run_id: str, path: str, local: Path, progress: Progress | None = None) -> dict[str, Any]:
        with open(local, "rb") as handle:
            headers = {
                "content-length": str(local.stat().st_size),
                "content-type": "application/octet-stream",
            }
            return dict(
                self.json(
                    "PUT",
                    f"/api/v1/runs/{q(run_id)}/artifacts/{quote(path)}",
                    content=_read_chunks(handle, progress),
                    headers=headers,
                )
            )

    def list_artifacts(self, run_id: str, prefix: str = "") -> list[dict[str, Any]]:
        return list(self.json("GET", f"/api/v1/runs/{q(run_id)}/artifacts", params={"prefix": prefix}))

    def download_artifact(self, run_id: str, path: str, dest: Path) -> Path:
        return self._download(f"/api/v1/runs/{q(run_id)}/artifacts/{quote(path)}", dest, expected=None)

    def blob_exists(self, sha256: str) -> bool:
        try:
            self.request("HEAD", f"/api/v1/blobs/{sha256}")
        except errors.NotFound:
            return False
        return True

    def upload_blob(self, local: Path, sha256: str, progress: Progress | None = None) -> None:
        """Send ``local``'s bytes under ``sha256``: straight to the registry's S3 bucket over presigned URLs
        when it offers that (blobs from 8 MiB), else streamed through the registry. Either way the registry
        verifies the digest before the blob exists."""
        size = local.stat().st_size
        if size >= _direct.MIN_BYTES and self.direct is not False:
            if _direct.upload(self, local, sha256, size, progress) is not None:
                return
            self.direct = False  # asked once per client: this registry streams
        with open(local, "rb") as handle:
            headers = {
                "content-length": str(local.stat().st_size),
                "content-type": "application/octet-stream",
            }
            self.request("PUT", f"/api/v1/blobs/{sha256}", content=_read_chunks(handle, progress), headers=headers)

    def _download(
        self,
        path: str,
        dest: Path,
        *,
        expected: str | None,
        progress: Progress | None = None,
        direct_sha256: str | None = None,
        direct_size: int = 0,
    ) -> Path:
        """Stream to ``dest.part``, verify sha256, rename: a failed pull never leaves a corrupt file. With
        ``direct_sha256``, a blob from 8 MiB comes straight from the S3 bucket when the registry offers it."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        url = None
        if direct_sha256 is not None and direct_size >= _direct.MIN_BYTES and self.direct is not False:
            url = _direct.download_url(self, direct_sha256)
            if url is None:
                self.direct = False
        try:
            for response in _direct.stream_url(url) if url else self.stream_download(path):
                expected = expected or response.headers.get("x-content-sha256")
                with open(partial, "wb") as handle:
                    for chunk in response.iter_bytes(CHUNK):
                        handle.write(chunk)
                        digest.update(chunk)
                        if progress:
                            progress(len(chunk))
            if expected and digest.hexdigest() != expected:
                raise errors.Conflict(
                    f"{dest}: sha256 {digest.hexdigest()} does not match {expected}; "
                    "the transfer was corrupted, pull again",
                    code="checksum_mismatch",
                )
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
        return dest

    # -- models, versions, aliases ----------------------------------------------------------------------
    def create_model(self, name: str, description: str | None = None) -> dict[str, Any]:
        return dict(self.json("POST", "/api/v1/models", json={"name": name, "description": description}))

    def ensure_model(self, name: str) -> dict[str, Any]:
        try:
            return self.create_model(name)
        except errors.Conflict:
            return self.get_model(name)

    def get_model(self, name: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/api/v1/models/{q(name)}"))

    def list_models(self, limit: int = 100) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit} | ({"after": after} if after else {})
            page = self.json("GET", "/api/v1/models", params=params)
            yield from page["items"]
            after = page.get("next")
            if not after:
                return

    def create_version(self, model: str, **fields: Any) -> dict[str, Any]:
        body = {k: v for k, v in fields.items() if v is not None}
        return dict(self.json("POST", f"/api/v1/models/{q(model)}/versions", json=body))

    def list_versions(self, model: str, limit: int = 100) -> Iterator[dict[str, Any]]:
        after = 0
        while True:
            page = self.json("GET", f"/api/v1/models/{q(model)}/versions", params={"limit": limit, "after": after})
            yield from page["items"]
            if not page.get("next"):
                return
            after = int(page["next"])

    def get_version(self, model: str, version: int) -> dict[str, Any]:
        return dict(self.json("GET", f"/api/v1/models/{q(model)}/versions/{version}"))

    def get_by_alias(self, model: str, alias: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/api/v1/models/{q(model)}/aliases/{q(alias)}"))

    def resolve(self, ref: str) -> dict[str, Any]:
        model, alias, version = parse_ref(ref)
        return self.get_by_alias(model, alias) if alias else self.get_version(model, version or 0)

    def set_alias(
        self,
        model: str,
        alias: str,
        version: int,
        *,
        reason: str | None = None,
        expect: int | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        body = {"version": version, "reason": reason, "expect": expect, "force": force}
        return dict(self.json("PUT", f"/api/v1/models/{q(model)}/aliases/{q(alias)}", json=body))

    def delete_alias(self, model: str, alias: str, reason: str | None = None) -> dict[str, Any]:
        params = {"reason": reason} if reason else None
        return dict(self.json("DELETE", f"/api/v1/models/{q(model)}/aliases/{q(alias)}", params=params))

    def rollback(self, model: str, alias: str, reason: str | None = None) -> dict[str, Any]:
        return dict(
            self.json("POST", f"/api/v1/models/{q(model)}/aliases/{q(alias)}/rollback", json={"reason": reason})
        )

    def promotions(self, model: str, alias: str | None = None) -> list[dict[str, Any]]:
        params = {"alias": alias} if alias else None
        return list(self.json("GET", f"/api/v1/models/{q(model)}/promotions", params=params))

    def push(
        self,
        model: str,
        folder: Path,
        *,
        run_id: str | None = None,
        description: str | None = None,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload a local file/folder as the next version of ``model`` (created if missing).

        Blobs the server already has are not sent again (content addressing)."""
        files = scan_folder(folder)
        manifest = [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in files]
        for attempt in range(PUSH_ATTEMPTS):
            missing = [f for f in files if not self.blob_exists(f.sha256)]
            if on_total and attempt == 0:
                on_total(sum(f.size for f in missing))
            uploaded: set[str] = set()
            for f in missing:
                if f.sha256 not in uploaded:
                    self.upload_blob(f.local, f.sha256, progress)
                    uploaded.add(f.sha256)
            self.ensure_model(model)
            try:
                return self.create_version(
                    model, files=manifest, run_id=run_id, description=description, source=f"push:{folder.name}"
                )
            except (errors.InvalidInput, errors.Conflict) as exc:
                # A storage collection reclaimed a blob this push skipped as already stored (or was uploading):
                # upload what is missing now and try again.
                if exc.code not in RECLAIMED or attempt == PUSH_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def pull(
        self,
        ref: str,
        dest: Path | str,
        *,
        force: bool = False,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Download a version's files into the folder ``dest`` and verify every sha256.

        ``dest`` must be missing or empty unless ``force``; with ``force`` it ends up holding exactly the
        version's files. Files are downloaded into a staging folder beside ``dest`` (so its parent must be
        writable), verified, and only then swapped into place: a process reading ``dest`` never sees a
        partial or mixed model, and a failed pull leaves ``dest`` as it was.

        Raises InvalidInput (``dest`` is not a folder; ``destination_not_empty`` without ``force``; a stored
        path that would land outside ``dest``), Conflict (``checksum_mismatch``), NotFound, and OSError for
        local file system failures.
        """
        root = Path(dest).resolve()  # a symlinked folder: its target is replaced, the link kept
        check_destination(root, force=force)
        version = self.resolve(ref)
        paths = relative_paths((f["path"] for f in version["files"]), root)
        if on_total:
            on_total(sum(int(f["size"]) for f in version["files"]))
        staging = make_staging(root)
        try:
            for f, rel in zip(version["files"], paths, strict=True):
                self._download(
                    f"/api/v1/blobs/{f['sha256']}",
                    staging.joinpath(*rel.parts),
                    expected=f["sha256"],
                    progress=progress,
                    direct_sha256=f["sha256"],
                    direct_size=int(f["size"]),
                )
            swap_in(staging, root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful swap
        return version

    # -- monitoring ---------------------------------------------------------------------------------------
    def set_monitor_baseline(
        self,
        model: str,
        version: int,
        data: Path | None = None,
        *,
        artifact: str | None = None,
        prediction: str | None = None,
        target: str | None = None,
        id: str | None = None,
        timestamp: str | None = None,
        columns: list[str] | None = None,
        exclude: list[str] | None = None,
        categorical: list[str] | None = None,
        numerical: list[str] | None = None,
    ) -> dict[str, Any]:
        """Bind reference data (a Parquet or CSV file, or a dataset artifact ``NAME:VERSION``) to a version."""
        lists = {"columns": columns, "exclude": exclude, "categorical": categorical, "numerical": numerical}
        params: dict[str, Any] = {
            k: v
            for k, v in {"prediction": prediction, "target": target, "id": id, "timestamp": timestamp}.items()
            if v is not None
        } | {k: ",".join(v) for k, v in lists.items() if v}
        path = f"/api/v1/models/{q(model)}/versions/{version}/monitor/baseline"
        if artifact is not None:
            return dict(self.json("PUT", path, params=params | {"artifact": artifact}))
        if data is None:
            raise errors.InvalidInput("give the reference data (a file) or an artifact NAME:VERSION")
        return dict(self._send_data("PUT", path, data, params))

    def monitor_baseline(self, model: str, version: int) -> dict[str, Any]:
        return dict(self.json("GET", f"/api/v1/models/{q(model)}/versions/{version}/monitor/baseline"))

    def monitor_ingest(
        self,
        model: str,
        data: Path,
        *,
        alias: str | None = None,
        version: int | None = None,
        at: str | None = None,
    ) -> dict[str, Any]:
        """Send production rows (Parquet, CSV or JSON lines, by the file's suffix) for ``alias`` or ``version``."""
        params = {k: v for k, v in {"alias": alias, "version": version, "at": at}.items() if v is not None}
        return dict(self._send_data("POST", f"/api/v1/models/{q(model)}/monitor/batches", data, params))

    def _send_data(self, method: str, path: str, data: Path, params: dict[str, Any]) -> Any:
        with open(data, "rb") as handle:
            headers = {"content-length": str(data.stat().st_size), "content-type": data_content_type(data)}
            return self.json(method, path, params=params, content=_read_chunks(handle, None), headers=headers)

    def set_monitor_spec(self, model: str, spec: str) -> dict[str, Any]:
        return dict(self.json("PUT", f"/api/v1/models/{q(model)}/monitor", json={"spec": spec}))

    def monitor_spec(self, model: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/api/v1/models/{q(model)}/monitor"))

    def monitor_check(
        self,
        model: str,
        *,
        alias: str | None = None,
        version: int | None = None,
        window: str | None = None,
        end: str | None = None,
    ) -> dict[str, Any]:
        """Run one drift check now (stored on the version); returns it."""
        params = {k: v for k, v in {"alias": alias, "version": version, "window": window, "end": end}.items() if v}
        return dict(self.json("POST", f"/api/v1/models/{q(model)}/monitor/checks", params=params))

    def monitor_checks(
        self, model: str, *, alias: str | None = None, version: int | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"alias": alias, "version": version, "limit": limit}.items() if v is not None}
        return list(self.json("GET", f"/api/v1/models/{q(model)}/monitor/checks", params=params))

    def monitor_status(self, model: str) -> list[dict[str, Any]]:
        """The newest check of each alias."""
        return list(self.json("GET", f"/api/v1/models/{q(model)}/monitor/status"))

    def monitor_labels(
        self, model: str, data: Path, *, id: str | None = None, target: str | None = None
    ) -> dict[str, Any]:
        """Send labels (Parquet, CSV or JSON lines of ids and labels) for production rows sent earlier."""
        params = {k: v for k, v in {"id": id, "target": target}.items() if v is not None}
        return dict(self._send_data("POST", f"/api/v1/models/{q(model)}/monitor/labels", data, params))

    def monitor_report_html(self, model: str, check_id: int, dest: Path) -> Path:
        """Download a check's Evidently HTML report to ``dest`` (the server builds it on the first request)."""
        return self._download(f"/api/v1/models/{q(model)}/monitor/checks/{check_id}/report.html", dest, expected=None)

    # -- tokens, events, audit ---------------------------------------------------------------------------
    def create_token(self, name: str, role: str, expires_in_days: float | None = None) -> dict[str, Any]:
        body = {"name": name, "role": role, "expires_in_days": expires_in_days}
        return dict(self.json("POST", "/api/v1/tokens", json=body))

    def list_tokens(self) -> list[dict[str, Any]]:
        return list(self.json("GET", "/api/v1/tokens"))

    def revoke_token(self, name: str) -> dict[str, Any]:
        return dict(self.json("DELETE", f"/api/v1/tokens/{q(name)}"))

    def events(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.json("GET", "/api/v1/events", params={"after": after, "limit": limit})["items"])

    def audit_log(self, *, action: str | None = None, after: int = 0, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Audit entries with an id above ``after``, oldest first, following pages (admin)."""
        while True:
            params: dict[str, Any] = {"after": after, "limit": page_size} | ({"action": action} if action else {})
            page = self.json("GET", "/api/v1/audit", params=params)
            yield from page["items"]
            if not page.get("next") or not page["items"]:
                return
            after = int(page["next"])
