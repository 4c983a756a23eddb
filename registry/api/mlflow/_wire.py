"""MLflow's wire format: protobuf-JSON request parsing and response rendering (no rules here).

Requests follow proto3-JSON as MLflow's client sends it: POST/PATCH/DELETE carry a JSON body, GET carries
query parameters; unknown fields are ignored, ``null`` means absent, int64 fields may be numbers or numeric
strings, string fields must be strings. Responses use MLflow's field names, epoch-millisecond times and
string ids.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import msgspec
from litestar import Request

from registry.api.errors import NESTED_TOO_DEEP
from registry.api.v1._common import INT64_MAX, check_json_text, int64_or_none
from registry.domain.experiments import Experiment
from registry.domain.models import RegisteredModel
from registry.domain.runs import Metric, Run
from registry.errors import InvalidInput
from registry.services.runs import MetricPoint, RunView

T = TypeVar("T")


class KeyValue(msgspec.Struct):
    key: str
    value: str | None = None


async def body(request: Request[Any, Any, Any], kind: type[T]) -> T:
    """Decode the JSON body into ``kind`` (lax: numeric strings are accepted for numbers).

    Raises InvalidInput for malformed JSON, wrong types, integers beyond int64, NUL in a string or nesting
    deeper than the decoder follows."""
    raw = await request.body()
    check_json_text(raw)
    try:
        return msgspec.json.decode(raw or b"{}", type=kind, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"malformed JSON body: {exc}") from None
    except RecursionError:
        raise InvalidInput(NESTED_TOO_DEEP) from None


def query(request: Request[Any, Any, Any], name: str, *, required: bool = True, default: str | None = None) -> str:
    value = request.query_params.get(name)
    if value is None or value == "":
        if required and default is None:
            raise InvalidInput(f"missing value for required parameter '{name}'")
        return default or ""
    return str(value)


def query_int(request: Request[Any, Any, Any], name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value in (None, ""):
        return default
    return parse_int(str(value), name)


def require(value: T | None, name: str) -> T:
    if value is None or value == "":
        raise InvalidInput(f"missing value for required parameter '{name}'")
    return value


def parse_int(value: str | int | None, name: str) -> int:
    """An int64 (MLflow's integer fields are int64): InvalidInput when missing, not a number or out of range,
    so no value reaches a BIGINT column to overflow there."""
    if value is None or value == "":
        raise InvalidInput(f"missing value for required parameter '{name}'")
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"parameter '{name}' must be an integer, got {value!r}") from None
    if int64_or_none(number) is None:
        raise InvalidInput(f"parameter '{name}' is out of range (a 64-bit integer), got {value!r}")
    return number


_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def ms(value: datetime | None) -> int | None:
    """Epoch milliseconds, exact (no float rounding); a naive value is UTC, as the database stores it."""
    if value is None:
        return None
    return (value - (_EPOCH if value.tzinfo is None else _EPOCH_UTC)) // _MS


def tags_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


def experiment_json(experiment: Experiment, tags: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "experiment_id": str(experiment.id),
        "name": experiment.name,
        "artifact_location": experiment.artifact_location or f"mlflow-artifacts:/{experiment.id}",
        "lifecycle_stage": experiment.lifecycle_stage,
        "creation_time": ms(experiment.created_at),
        "last_update_time": ms(experiment.updated_at),
    }
    if tags:
        out["tags"] = tags_list(tags)
    return out


def artifact_uri(run: Run) -> str:
    return f"mlflow-artifacts:/{run.experiment_id}/{run.id}/artifacts"


def run_info_json(run: Run) -> dict[str, Any]:
    info: dict[str, Any] = {
        "run_uuid": run.id,
        "run_id": run.id,
        "run_name": run.name,
        "experiment_id": str(run.experiment_id),
        "user_id": run.user,
        "status": run.status,
        "start_time": ms(run.start_time),
        "artifact_uri": artifact_uri(run),
        "lifecycle_stage": run.lifecycle_stage,
    }
    if run.end_time is not None:
        info["end_time"] = ms(run.end_time)
    return info


def metric_json(metric: MetricPoint | Metric) -> dict[str, Any]:
    return {"key": metric.key, "value": metric.value, "timestamp": metric.timestamp, "step": metric.step}


def run_json(view: RunView) -> dict[str, Any]:
    tags = dict(view.tags)
    tags.setdefault("mlflow.runName", view.run.name)
    data: dict[str, Any] = {
        "metrics": [metric_json(m) for m in view.metrics],
        "params": [{"key": k, "value": v} for k, v in view.params.items()],
        "tags": tags_list(tags),
    }
    inputs: dict[str, Any] = {}
    if view.inputs:
        inputs["dataset_inputs"] = [
            {
                "dataset": {
                    "name": a.name,
                    "digest": a.digest,
                    "source_type": "modelkeep",
                    "source": f"{a.name}/{a.version}",
                },
                "tags": [{"key": "mlflow.data.context", "value": "training"}],
            }
            for a in view.inputs
        ]
    return {"info": run_info_json(view.run), "data": data, "inputs": inputs, "outputs": {}}


class VersionLike(Protocol):
    """A ModelVersion row or a plain-column result row with the same names (searches select columns)."""

    @property
    def version(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def created_by(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def source(self) -> str: ...
    @property
    def run_id(self) -> str | None: ...


def version_rows_json(rows: Iterable[Sequence[Any]], tags: dict[int, dict[str, str]]) -> list[dict[str, Any]]:
    """``version_json`` of search rows (the model's name, then ``search.VERSION_COLUMNS``), unpacked once each
    rather than read by attribute: a page holds up to 200,000 of them."""
    out = []
    for name, version_id, number, created, updated, by, stage, description, source, run_id in rows:
        item = _version_fields(name, number, created, updated, by, stage, description, source, run_id)
        held = tags.get(version_id)
        if held:
            item["tags"] = tags_list(held)
        out.append(item)
    return out


def version_json(
    model_name: str,
    version: VersionLike,
    *,
    tags: dict[str, str] | None = None,
    aliases: list[str] | None = None,
) -> dict[str, Any]:
    v = version
    out = _version_fields(
        model_name, v.version, v.created_at, v.updated_at, v.created_by, v.stage, v.description, v.source, v.run_id
    )
    if tags:
        out["tags"] = tags_list(tags)
    if aliases:
        out["aliases"] = aliases
    return out


def _version_fields(
    name: str,
    number: int,
    created: datetime,
    updated: datetime,
    by: str,
    stage: str,
    description: str | None,
    source: str,
    run_id: str | None,
) -> dict[str, Any]:
    """MLflow's ModelVersion fields; status is always READY (a version is complete when it is created)."""
    return {
        "name": name,
        "version": str(number),
        "creation_timestamp": ms(created),
        "last_updated_timestamp": ms(updated),
        "user_id": by,
        "current_stage": stage,
        "description": description or "",
        "source": source,
        "run_id": run_id or "",
        "status": "READY",
        "run_link": "",
    }


def model_json(
    model: RegisteredModel,
    *,
    tags: dict[str, str],
    aliases: list[tuple[str, int]],
    latest: list[dict[str, Any]],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": model.name,
        "creation_timestamp": ms(model.created_at),
        "last_updated_timestamp": ms(model.updated_at),
        "description": model.description or "",
    }
    if latest:
        out["latest_versions"] = latest
    if tags:
        out["tags"] = tags_list(tags)
    if aliases:
        out["aliases"] = [{"alias": a, "version": str(v)} for a, v in aliases]
    return out


def page_token(offset: int) -> str:
    """Opaque page token (base64 JSON, as MLflow's own server writes them)."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def page_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise InvalidInput(f"invalid page_token {token!r}") from None
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= INT64_MAX:
        raise InvalidInput(f"invalid page_token {token!r}")
    return offset
