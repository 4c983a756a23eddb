"""`registry webhooks ...`: subscriptions, deliveries, redelivery."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from registry.cli._common import JsonOpt, TokenOpt, UrlOpt, client, emit, make_table, out

app = typer.Typer(
    help="Signed webhooks (Standard Webhooks), delivered at least once with retries.", no_args_is_help=True
)
IdArg = Annotated[int, typer.Argument(help="Webhook id (see `registry webhooks list`).")]


def _hook_line(d: dict[str, Any]) -> str:
    state = "enabled" if d["enabled"] else f"disabled ({d['disabled_reason']})"
    text = f"webhook {d['id']} → {d['url']} [{', '.join(d['events'])}] {state}"
    if d.get("secret"):
        text += f"\nsigning secret (shown once): {d['secret']}"
    return text


@app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Endpoint URL (https unless local use is allowed).")],
    events: Annotated[str, typer.Option("--events", help="Comma-separated event types, or '*'.")],
    model: Annotated[str | None, typer.Option("--model", help="Only events of this model.")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    url_: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe an endpoint; prints its whsec_ signing secret once."""
    body = {
        "url": url,
        "events": [e.strip() for e in events.split(",") if e.strip()],
        "model": model,
        "description": description,
    }
    with client(url_, token) as api:
        emit(api.json("POST", "/api/v1/webhooks", json=body), as_json, _hook_line)


@app.command("list")
def list_hooks(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List endpoints."""
    with client(url, token) as api:
        rows = api.json("GET", "/api/v1/webhooks")
    emit(
        rows,
        as_json,
        lambda rs: make_table(
            "Webhooks",
            ["id", "url", "events", "model", "state", "last success"],
            (
                (
                    r["id"],
                    r["url"],
                    ", ".join(r["events"]),
                    r["model"] or "*",
                    "enabled" if r["enabled"] else f"disabled: {r['disabled_reason']}",
                    r["last_success_at"],
                )
                for r in rs
            ),
        ),
    )


def _post(path: str, url: str | None, token: str | None, as_json: bool, body: dict[str, Any] | None = None) -> None:
    with client(url, token) as api:
        emit(api.json("POST", path, json=body or {}), as_json, _hook_line)


@app.command("disable")
def disable(
    webhook_id: IdArg,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop delivering to an endpoint."""
    _post(f"/api/v1/webhooks/{webhook_id}/disable", url, token, as_json, {"reason": reason})


@app.command("enable")
def enable(webhook_id: IdArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Resume delivering to an endpoint."""
    _post(f"/api/v1/webhooks/{webhook_id}/enable", url, token, as_json)


@app.command("rotate-secret")
def rotate_secret(webhook_id: IdArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """New signing secret; the old one keeps signing too during the overlap window."""
    _post(f"/api/v1/webhooks/{webhook_id}/rotate-secret", url, token, as_json)


@app.command("test")
def test(webhook_id: IdArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Send a webhook.test event to this endpoint only."""
    with client(url, token) as api:
        data = api.json("POST", f"/api/v1/webhooks/{webhook_id}/test")

    emit(
        data,
        as_json,
        lambda d: make_table(
            "Test event queued", ["webhook", "event", "type"], [(d["webhook_id"], d["event_id"], "webhook.test")]
        ),
    )
    if not as_json:
        out.print(f"follow it with `registry webhooks deliveries --webhook {data['webhook_id']}`", highlight=False)


@app.command("remove")
def remove(webhook_id: IdArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Delete an endpoint and its delivery history."""
    with client(url, token) as api:
        emit(api.json("DELETE", f"/api/v1/webhooks/{webhook_id}"), as_json, lambda d: f"removed webhook {webhook_id}")


@app.command("deliveries")
def deliveries(
    status: Annotated[
        str | None, typer.Option("--status", help="pending, delivering, succeeded, failed or cancelled.")
    ] = None,
    webhook: Annotated[int | None, typer.Option("--webhook", help="Only this endpoint.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deliveries, newest first, with every attempt (status code, latency, error)."""
    params: dict[str, Any] = (
        {"limit": limit}
        | ({"status": status} if status else {})
        | ({"webhook_id": webhook} if webhook is not None else {})
    )
    with client(url, token) as api:
        rows = api.json("GET", "/api/v1/webhooks/deliveries", params=params)

    def table(rs: list[dict[str, Any]]) -> Any:
        return make_table(
            "Deliveries",
            ["id", "webhook", "event", "status", "attempts", "last", "next attempt"],
            (
                (
                    r["id"],
                    r["webhook_id"],
                    f"{r['event_type']} {r['event_id']}",
                    r["status"],
                    r["attempts"],
                    " ".join(
                        f"#{a['attempt']}:{a['status_code'] or a['error']}({a['duration_ms']}ms)" for a in r["history"]
                    ),
                    r["next_attempt_at"],
                )
                for r in rs
            ),
        )

    emit(rows, as_json, table)


@app.command("redeliver")
def redeliver(
    delivery_id: Annotated[int, typer.Argument(help="Delivery id.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a delivery again (same webhook-id, so receivers can deduplicate)."""
    with client(url, token) as api:
        data = api.json("POST", f"/api/v1/webhooks/deliveries/{delivery_id}/redeliver")
    emit(data, as_json, lambda d: f"delivery {d['id']} queued again")


@app.command("recover")
def recover(
    webhook_id: IdArg,
    since: Annotated[datetime, typer.Option("--since", help="ISO time, e.g. 2026-11-20T00:00:00+00:00.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Requeue an endpoint's failed deliveries since a time."""
    when = since if since.tzinfo else since.astimezone()
    with client(url, token) as api:
        data = api.json("POST", f"/api/v1/webhooks/{webhook_id}/recover", json={"since": when.isoformat()})
    emit(data, as_json, lambda d: f"requeued {d['requeued']} deliveries of webhook {webhook_id}")
