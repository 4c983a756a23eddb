"""The experiments, webhooks, jobs and audit pages in-process: what they show, their keyset pages, the roles that
decide the Redeliver button and the redelivery itself, and bad input answered with 4xx pages, never 500.

Webhooks are made through the API (a public https URL: a host name is checked only when a delivery is sent).
Their deliveries are written straight into the database for a *disabled* webhook: no dispatcher (of a live
server sharing the test database) claims those, so their states stay as the tests set them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select, update

from automations.domain import Delivery, DeliveryAttempt
from registry.db import Database
from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.domain.events import Event
from registry.ui import admin
from registry.ui._render import environment
from tests.conftest import Tokens, bearer, unique
from tests.ui.conftest import csrf_of, sign_in
from tests.ui.seed import Seeded

SECRET_PATH = "/services/T000/B000/XXXXSECRET"
GATE = """
version: 1
gates:
  - {id: accuracy, kind: proportion, outcome: correct, threshold: 0.95}
"""
HUGE = str(2**70)


@asynccontextmanager
async def client_of(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as client:
        yield client


@asynccontextmanager
async def signed_in(app: Litestar, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client of the in-process app, signed in with ``token`` through the form."""
    async with client_of(app) as client:
        answer = await sign_in(client, token)
        assert answer.status_code == 303, answer.text
        yield client


@pytest.fixture
async def admin_ui(browser_less: httpx.AsyncClient, api_tokens: Tokens) -> httpx.AsyncClient:
    await sign_in(browser_less, api_tokens.admin)
    return browser_less


def is_html_error(answer: httpx.Response, status: int) -> bool:
    return (
        answer.status_code == status
        and answer.headers["content-type"].startswith("text/html")
        and "content-security-policy" in answer.headers
    )


# -- data -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hooks:
    failing: int
    """Disabled (reason "paused by the tests"), with a secret-looking path and two deliveries."""
    quiet: int
    """Enabled, URL without a path, no deliveries."""
    old: int
    """The older delivery of ``failing``: failed, with two attempts."""
    new: int
    """The newer delivery of ``failing``: succeeded."""


async def add_delivery(
    db: Database, *, hook: int, event_id: str, status: str, attempts: int, code: int | None, error: str | None
) -> int:
    async with db.write() as session:
        seq = await session.scalar(select(Event.seq).where(Event.id == event_id))
        assert seq is not None
        now = utcnow()
        delivery = Delivery(
            event_seq=seq,
            webhook_id=hook,
            status=status,
            attempts=attempts,
            next_attempt_at=None,
            last_status_code=code,
            last_error=error,
            last_latency_ms=12 if code else None,
            succeeded_at=now if status == "succeeded" else None,
        )
        session.add(delivery)
        await session.flush()
        for n in range(1, attempts + 1):
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery.id,
                    attempt_no=n,
                    started_at=now - timedelta(seconds=10 * (attempts - n)),
                    duration_ms=20 + n,
                    status_code=code,
                    error=error,
                )
            )
        return delivery.id


@pytest.fixture(scope="module")
async def hooks(ui_app: Litestar, db: Database, api_tokens: Tokens) -> Hooks:
    h = bearer(api_tokens.maintainer)
    async with client_of(ui_app) as api:
        made = await api.post(
            "/api/v1/webhooks/",
            json={
                "url": f"https://hooks.example.com{SECRET_PATH}",
                "events": ["webhook.test"],
                "description": "team channel",
            },
            headers=h,
        )
        assert made.status_code == 201, made.text
        failing = made.json()["id"]
        paused = await api.post(
            f"/api/v1/webhooks/{failing}/disable", json={"reason": "paused by the tests"}, headers=h
        )
        assert paused.status_code == 200, paused.text
        events = []
        for _ in range(2):
            sent = await api.post(f"/api/v1/webhooks/{failing}/test", headers=h)
            assert sent.status_code == 202, sent.text
            events.append(sent.json()["event_id"])
        quiet = await api.post(
            "/api/v1/webhooks/", json={"url": "https://quiet.example.com/", "events": ["webhook.test"]}, headers=h
        )
        assert quiet.status_code == 201, quiet.text
    old = await add_delivery(
        db, hook=failing, event_id=events[0], status="failed", attempts=2, code=500, error="HTTP 500 from the receiver"
    )
    new = await add_delivery(db, hook=failing, event_id=events[1], status="succeeded", attempts=1, code=204, error=None)
    return Hooks(failing=failing, quiet=quiet.json()["id"], old=old, new=new)


async def delivery_of(ui_app: Litestar, token: str, hook: int, delivery: int) -> dict[str, object]:
    async with client_of(ui_app) as api:
        found = await api.get("/api/v1/webhooks/deliveries", params={"webhook_id": hook}, headers=bearer(token))
    assert found.status_code == 200, found.text
    return next(d for d in found.json() if d["id"] == delivery)


# -- experiments ----------------------------------------------------------------------------------------------
async def test_experiments_list_links_each_with_its_run_count(admin_ui: httpx.AsyncClient, seeded: Seeded) -> None:
    page = await admin_ui.get("/ui/experiments")
    assert page.status_code == 200
    row = re.search(rf'<a href="/ui/experiments/{seeded.experiment_id}">[^<]+</a>.*?</tr>', page.text, re.S)
    assert row is not None, page.text[:2000]
    assert '<td class="num">1</td>' in row.group(0), "the seeded experiment has one run"
    assert 'href="/ui/experiments"' in page.text and "Experiments" in page.text


async def test_experiments_are_paged_by_id(
    admin_ui: httpx.AsyncClient, seeded: Seeded, api_tokens: Tokens, ui_app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with client_of(ui_app) as api:
        for _ in range(3):
            made = await api.post(
                "/api/v1/experiments/", json={"name": unique("paged")}, headers=bearer(api_tokens.writer)
            )
            assert made.status_code == 201
    monkeypatch.setattr(admin, "EXPERIMENTS_PAGE", 2)
    seen: list[int] = []
    url: str | None = "/ui/experiments"
    while url is not None:
        page = await admin_ui.get(url)
        assert page.status_code == 200
        ids = [int(i) for i in re.findall(r'<a href="/ui/experiments/(\d+)">', page.text)]
        assert 1 <= len(ids) <= 2
        seen += ids
        more = re.search(r'href="(/ui/experiments\?after=\d+)">More experiments', page.text)
        url = more.group(1) if more else None
    assert seen == sorted(set(seen)) and seen[0] == 0, "every experiment once, by id, the default (#0) first"
    assert seeded.experiment_id in seen
    after_last = await admin_ui.get("/ui/experiments", params={"after": seen[-1]})
    assert after_last.status_code == 200 and f"No experiments after #{seen[-1]}." in after_last.text


async def test_an_experiment_lists_its_runs_newest_first_in_a_compare_form(
    admin_ui: httpx.AsyncClient, ui_app: Litestar, api_tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = bearer(api_tokens.writer)
    name = unique("exp")
    started = 1_700_000_000_000
    made: dict[str, str] = {}
    async with client_of(ui_app) as api:
        # Two runs start at the same instant: the id breaks the tie, and paging must not lose or repeat one.
        for run_name, at in (
            ("oldest", started),
            ("tie-a", started + 1000),
            ("tie-b", started + 1000),
            ("new", started + 5000),
        ):
            run = await api.post(
                "/api/v1/runs/", json={"experiment": name, "name": run_name, "start_time": at}, headers=h
            )
            assert run.status_code == 201, run.text
            made[run_name] = run.json()["id"]
        points = [
            {"key": "loss", "value": 0.5, "step": 1},
            {"key": "loss", "value": 0.25, "step": 2},
            {"key": "accuracy", "value": 0.875, "step": 2},
            {"key": "system/gpu", "value": 99.0, "step": 2},
            {"key": "zeta", "value": 1.0, "step": 2},
            {"key": "zzz", "value": 2.0, "step": 2},
        ]
        logged = await api.post(f"/api/v1/runs/{made['new']}/log-batch", json={"metrics": points}, headers=h)
        assert logged.status_code == 200, logged.text
        experiment_id = (await api.get(f"/api/v1/runs/{made['new']}", headers=h)).json()["experiment_id"]

    page = await admin_ui.get(f"/ui/experiments/{experiment_id}")
    assert page.status_code == 200
    ties = sorted([made["tie-a"], made["tie-b"]])
    expected = [made["new"], *ties, made["oldest"]]
    assert re.findall(r'<tr data-run="([0-9a-f]+)">', page.text) == expected
    form = page.text.split('<form method="get" action="/ui/compare"')[1].split("</form>")[0]
    assert re.findall(r'type="checkbox" name="run" value="([0-9a-f]+)" id="pick-\1"', form) == expected
    assert all(f'<label class="vh" for="pick-{i}">' in form for i in expected), "each checkbox is labelled"
    assert 'type="submit"' in form and "Compare selected" in form
    assert all(f'href="/ui/runs/{i}"' in page.text for i in expected)
    newest = page.text.split(f'<tr data-run="{made["new"]}">')[1].split("</tr>")[0]
    assert "accuracy=0.875" in newest and "loss=0.25" in newest and "zeta=1" in newest
    assert "system/gpu" not in newest and "zzz" not in newest and "+1 more" in newest
    assert "FINISHED" not in newest and "RUNNING" in newest

    monkeypatch.setattr(admin, "RUNS_PAGE", 1)
    seen: list[str] = []
    url: str | None = f"/ui/experiments/{experiment_id}"
    while url is not None:
        paged = await admin_ui.get(url)
        assert paged.status_code == 200
        seen += re.findall(r'<tr data-run="([0-9a-f]+)">', paged.text)
        older = re.search(r'href="(/ui/experiments/\d+\?before=[0-9a-f]+)">Older runs', paged.text)
        url = older.group(1) if older else None
    assert seen == expected


async def test_an_experiment_without_runs_says_how_to_start_one(
    admin_ui: httpx.AsyncClient, ui_app: Litestar, api_tokens: Tokens
) -> None:
    name = unique("empty")
    async with client_of(ui_app) as api:
        made = await api.post("/api/v1/experiments/", json={"name": name}, headers=bearer(api_tokens.writer))
    page = await admin_ui.get(f"/ui/experiments/{made.json()['id']}")
    assert page.status_code == 200
    assert "No runs yet" in page.text and f"start_run(&#34;{name}&#34;)" in page.text
    assert "Compare selected" not in page.text


async def test_experiment_pages_answer_bad_addresses_with_4xx(
    admin_ui: httpx.AsyncClient, seeded: Seeded, ui_app: Litestar, api_tokens: Tokens
) -> None:
    async with client_of(ui_app) as api:
        other = await api.post("/api/v1/runs/", json={"experiment": unique("other")}, headers=bearer(api_tokens.writer))
    foreign = other.json()["id"]
    for path, status in (
        ("/ui/experiments/987654321", 404),
        (f"/ui/experiments/{HUGE}", 404),
        ("/ui/experiments/-1", 404),
        ("/ui/experiments/abc", 404),
        (f"/ui/experiments/{seeded.experiment_id}?before=abc", 400),
        (f"/ui/experiments/{seeded.experiment_id}?before={'f' * 200}", 400),
        (f"/ui/experiments/{seeded.experiment_id}?before={foreign}", 400),
        ("/ui/experiments?after=abc", 400),
        (f"/ui/experiments?after={HUGE}", 400),
        ("/ui/experiments?after=-99999999999999999999999", 400),
    ):
        answer = await admin_ui.get(path)
        assert is_html_error(answer, status), (path, answer.status_code, answer.text[:300])


# -- webhooks -------------------------------------------------------------------------------------------------
async def test_webhooks_list_shows_state_counts_and_redacts_below_maintainer(
    hooks: Hooks, ui_app: Litestar, api_tokens: Tokens
) -> None:
    async with signed_in(ui_app, api_tokens.maintainer) as maintainer:
        page = await maintainer.get("/ui/webhooks")
    assert page.status_code == 200
    row = page.text.split(f'<tr data-webhook="{hooks.failing}">')[1].split("</tr>")[0]
    assert f"https://hooks.example.com{SECRET_PATH}" in row and "team channel" in row
    assert "disabled" in row and "paused by the tests" in row
    assert '<span class="pill bad">1</span>' in row, "one failed delivery"
    quiet = page.text.split(f'<tr data-webhook="{hooks.quiet}">')[1].split("</tr>")[0]
    assert "enabled" in quiet and "https://quiet.example.com/" in quiet

    async with signed_in(ui_app, api_tokens.reader) as reader:
        page = await reader.get("/ui/webhooks")
        one = await reader.get(f"/ui/webhooks/{hooks.failing}")
    assert page.status_code == 200 and one.status_code == 200
    for text in (page.text, one.text):
        assert "XXXXSECRET" not in text and "T000" not in text
        assert "https://hooks.example.com/***" in text
    assert "https://quiet.example.com/" in page.text, "nothing to hide without a path"


async def test_webhook_page_lists_deliveries_and_their_attempts(admin_ui: httpx.AsyncClient, hooks: Hooks) -> None:
    page = await admin_ui.get(f"/ui/webhooks/{hooks.failing}")
    assert page.status_code == 200
    assert re.findall(r'<tr data-delivery="(\d+)"', page.text) == [str(hooks.new), str(hooks.old)], "newest first"
    old = page.text.split(f'<tr data-delivery="{hooks.old}"')[1].split("</tr>")[0]
    assert 'data-status="failed"' in old and "webhook.test" in old
    assert "HTTP 500" in old and "HTTP 500 from the receiver" in old
    assert "<summary>2</summary>" in old and old.count("<li>") == 2
    assert f'data-testid="redeliver-{hooks.old}"' in old
    assert f'name="csrf" value="{csrf_of(page)}"' in old
    new = page.text.split(f'<tr data-delivery="{hooks.new}"')[1].split("</tr>")[0]
    assert 'data-status="succeeded"' in new and "HTTP 204" in new


async def test_deliveries_are_paged_by_id(
    admin_ui: httpx.AsyncClient, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "DELIVERIES_PAGE", 1)
    first = await admin_ui.get(f"/ui/webhooks/{hooks.failing}")
    assert re.findall(r'<tr data-delivery="(\d+)"', first.text) == [str(hooks.new)]
    older = re.search(r'href="/ui/webhooks/\d+\?before=(\d+)">Older deliveries', first.text)
    assert older is not None and int(older.group(1)) == hooks.new
    second = await admin_ui.get(f"/ui/webhooks/{hooks.failing}", params={"before": hooks.new})
    assert re.findall(r'<tr data-delivery="(\d+)"', second.text) == [str(hooks.old)]
    assert "Older deliveries" not in second.text and "← Newest" in second.text
    # The form on an older page keeps the page, and the redirect comes back to it.
    assert f'name="before" value="{hooks.new}"' in second.text
    past = await admin_ui.get(f"/ui/webhooks/{hooks.failing}", params={"before": hooks.old})
    assert past.status_code == 200 and f"No deliveries older than #{hooks.old}." in past.text


async def test_a_webhook_without_deliveries_says_how_to_send_one(admin_ui: httpx.AsyncClient, hooks: Hooks) -> None:
    page = await admin_ui.get(f"/ui/webhooks/{hooks.quiet}")
    assert page.status_code == 200
    assert "No deliveries yet" in page.text and f"registry webhooks test {hooks.quiet}" in page.text


async def test_redeliver_queues_the_delivery_again_and_says_so(
    hooks: Hooks, ui_app: Litestar, api_tokens: Tokens
) -> None:
    assert (await delivery_of(ui_app, api_tokens.admin, hooks.failing, hooks.old))["status"] == "failed"
    try:
        async with signed_in(ui_app, api_tokens.maintainer) as maintainer:
            page = await maintainer.get(f"/ui/webhooks/{hooks.failing}")
            posted = await maintainer.post(
                f"/ui/webhooks/{hooks.failing}/deliveries/{hooks.old}/redeliver", data={"csrf": csrf_of(page)}
            )
            assert posted.status_code == 303
            assert posted.headers["location"] == f"/ui/webhooks/{hooks.failing}?redelivered={hooks.old}"
            shown = await maintainer.get(posted.headers["location"])
        assert 'role="status"' in shown.text and f"Delivery #{hooks.old} is queued again" in shown.text
        again = await delivery_of(ui_app, api_tokens.admin, hooks.failing, hooks.old)
        assert again["status"] == "pending" and again["attempts"] == 0
    finally:  # put it back as the other tests expect it, whatever happened
        await set_status(ui_app, hooks.old, "failed")


async def set_status(ui_app: Litestar, delivery: int, status: str) -> None:
    db: Database = ui_app.state.db
    async with db.write() as session:
        await session.execute(update(Delivery).where(Delivery.id == delivery).values(status=status, attempts=2))


async def test_a_reader_sees_no_button_and_a_forged_form_is_refused(
    hooks: Hooks, ui_app: Litestar, api_tokens: Tokens
) -> None:
    for token in (api_tokens.reader, api_tokens.writer):
        async with signed_in(ui_app, token) as viewer:
            page = await viewer.get(f"/ui/webhooks/{hooks.failing}")
            assert page.status_code == 200
            assert 'data-testid="redeliver-' not in page.text and "needs the maintainer role" in page.text
            forged = await viewer.post(
                f"/ui/webhooks/{hooks.failing}/deliveries/{hooks.old}/redeliver", data={"csrf": csrf_of(page)}
            )
            assert is_html_error(forged, 403) and "needs the maintainer role" in forged.text
            # Probing ids tells a reader nothing either.
            probe = await viewer.post(
                f"/ui/webhooks/{hooks.failing}/deliveries/987654321/redeliver", data={"csrf": csrf_of(page)}
            )
            assert probe.status_code == 403
    assert (await delivery_of(ui_app, api_tokens.admin, hooks.failing, hooks.old))["status"] == "failed"


async def test_a_redelivery_without_the_csrf_token_is_refused(
    admin_ui: httpx.AsyncClient, hooks: Hooks, ui_app: Litestar, api_tokens: Tokens
) -> None:
    url = f"/ui/webhooks/{hooks.failing}/deliveries/{hooks.old}/redeliver"
    page = await admin_ui.get(f"/ui/webhooks/{hooks.failing}")
    for form in ({}, {"csrf": ""}, {"csrf": "forged-" + csrf_of(page)[7:]}):
        refused = await admin_ui.post(url, data=form)
        assert is_html_error(refused, 403) and "security token is missing or does not match" in refused.text
    assert (await delivery_of(ui_app, api_tokens.admin, hooks.failing, hooks.old))["status"] == "failed"


async def test_a_delivery_being_sent_is_not_redelivered(
    admin_ui: httpx.AsyncClient, hooks: Hooks, ui_app: Litestar
) -> None:
    await set_status(ui_app, hooks.old, "delivering")
    try:
        page = await admin_ui.get(f"/ui/webhooks/{hooks.failing}")
        row = page.text.split(f'<tr data-delivery="{hooks.old}"')[1].split("</tr>")[0]
        assert "being sent" in row and "redeliver-" not in row
        refused = await admin_ui.post(
            f"/ui/webhooks/{hooks.failing}/deliveries/{hooks.old}/redeliver", data={"csrf": csrf_of(page)}
        )
        assert refused.status_code == 409
        assert 'data-testid="redeliver-error"' in refused.text and "being delivered right now" in refused.text
    finally:
        await set_status(ui_app, hooks.old, "failed")


async def test_webhook_pages_answer_bad_addresses_with_4xx(admin_ui: httpx.AsyncClient, hooks: Hooks) -> None:
    for path, status in (
        ("/ui/webhooks/987654321", 404),
        (f"/ui/webhooks/{HUGE}", 404),
        ("/ui/webhooks/abc", 404),
        (f"/ui/webhooks/{hooks.failing}?before=abc", 400),
        (f"/ui/webhooks/{hooks.failing}?before={HUGE}", 400),
    ):
        answer = await admin_ui.get(path)
        assert is_html_error(answer, status), (path, answer.status_code, answer.text[:300])
    csrf = csrf_of(await admin_ui.get(f"/ui/webhooks/{hooks.failing}"))
    for path in (
        f"/ui/webhooks/{hooks.failing}/deliveries/987654321/redeliver",
        f"/ui/webhooks/{hooks.failing}/deliveries/{HUGE}/redeliver",
        f"/ui/webhooks/{hooks.quiet}/deliveries/{hooks.old}/redeliver",  # another webhook's delivery
        f"/ui/webhooks/{HUGE}/deliveries/{hooks.old}/redeliver",
        f"/ui/webhooks/{hooks.failing}/deliveries/abc/redeliver",
    ):
        answer = await admin_ui.post(path, data={"csrf": csrf})
        assert is_html_error(answer, 404), (path, answer.status_code, answer.text[:300])


# -- jobs -----------------------------------------------------------------------------------------------------
async def test_jobs_list_newest_first_with_a_status_filter(
    admin_ui: httpx.AsyncClient, seeded: Seeded, ui_app: Litestar, api_tokens: Tokens
) -> None:
    async with client_of(ui_app) as api:
        ids = []
        for _ in range(2):
            asked = await api.post(
                "/api/v1/hooks/gate-runs",
                json={"model": seeded.model, "version": 1, "spec": GATE},
                headers=bearer(api_tokens.admin),
            )
            assert asked.status_code == 202, asked.text
            ids.append(asked.json()["job_id"])
    page = await admin_ui.get("/ui/jobs")
    assert page.status_code == 200
    shown = [int(i) for i in re.findall(r'<tr data-job="(\d+)"', page.text)]
    assert shown == sorted(shown, reverse=True) and set(ids) <= set(shown)
    row = page.text.split(f'<tr data-job="{ids[0]}"')[1].split("</tr>")[0]
    assert "run_gate" in row and f'href="/ui/models/{seeded.model}"' in row
    assert f'href="/ui/models/{seeded.model}/versions/1">v1</a>' in row
    assert '<label for="status">Status</label>' in page.text and '<select id="status" name="status">' in page.text

    for status in admin.JOB_STATUSES:
        filtered = await admin_ui.get("/ui/jobs", params={"status": status})
        assert filtered.status_code == 200
        assert f'<option value="{status}" selected>' in filtered.text
        assert set(re.findall(r'<tr data-job="\d+" data-status="(\w+)"', filtered.text)) <= {status}
        if "<tr data-job=" not in filtered.text:
            assert f"No {status} jobs." in filtered.text
    for bad in ("bogus", "x" * 500):
        answer = await admin_ui.get("/ui/jobs", params={"status": bad})
        assert is_html_error(answer, 400), bad


# -- audit ----------------------------------------------------------------------------------------------------
async def test_audit_log_is_for_admins(hooks: Hooks, ui_app: Litestar, api_tokens: Tokens) -> None:
    for token in (api_tokens.reader, api_tokens.writer, api_tokens.maintainer):
        async with signed_in(ui_app, token) as viewer:
            answer = await viewer.get("/ui/audit")
            assert is_html_error(answer, 403) and "needs the admin role" in answer.text
            assert 'href="/ui/audit"' not in (await viewer.get("/ui/webhooks")).text, "no nav link below admin"
    async with signed_in(ui_app, api_tokens.admin) as boss:
        page = await boss.get("/ui/audit")
        assert page.status_code == 200 and 'href="/ui/audit"' in page.text
    ids = [int(i) for i in re.findall(r'<tr data-entry="(\d+)">', page.text)]
    assert ids and ids == sorted(ids, reverse=True)
    # Rows, not the filter's option list: the actions shown in the table's cells.
    shown = set(re.findall(r'<tr data-entry="\d+">.*?<td><span class="mono">([\w.]+)</span></td>', page.text, re.S))
    assert {"webhook.created", "token.created"} <= shown
    assert '<label for="action">Action</label>' in page.text


async def test_audit_log_filters_by_action_and_pages_by_id(
    admin_ui: httpx.AsyncClient, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    filtered = await admin_ui.get("/ui/audit", params={"action": "webhook.disabled"})
    assert filtered.status_code == 200
    actions = re.findall(r'<td><span class="mono">([\w.]+)</span></td>', filtered.text)
    assert actions and set(actions) == {"webhook.disabled"}
    assert "paused by the tests" in filtered.text
    assert '<option value="webhook.disabled" selected>' in filtered.text

    monkeypatch.setattr(admin, "AUDIT_PAGE", 2)
    seen: list[int] = []
    url: str | None = "/ui/audit?action=webhook.created"
    while url is not None:
        page = await admin_ui.get(url.replace("&amp;", "&"))
        assert page.status_code == 200
        seen += [int(i) for i in re.findall(r'<tr data-entry="(\d+)">', page.text)]
        older = re.search(r'href="(/ui/audit\?action=webhook.created&amp;before=\d+)">Older entries', page.text)
        url = older.group(1) if older else None
    assert len(seen) >= 2 and seen == sorted(set(seen), reverse=True)

    none = await admin_ui.get("/ui/audit", params={"action": "nothing.such"})
    assert none.status_code == 200 and "No “nothing.such” entries." in none.text
    for query in ({"before": "abc"}, {"before": HUGE}):
        answer = await admin_ui.get("/ui/audit", params=query)
        assert is_html_error(answer, 400), query


# -- empty states ---------------------------------------------------------------------------------------------
EMPTY: dict[str, tuple[dict[str, Any], str]] = {
    "experiments.html": ({"rows": [], "after": -1, "next_after": None}, "start_run(&#34;fraud-detection&#34;"),
    "webhooks.html": ({"rows": [], "may_manage": True}, "registry webhooks add https://"),
    "jobs.html": (
        {"rows": [], "status": "", "statuses": admin.JOB_STATUSES, "limit": 100},
        "registry automations apply",
    ),
    "audit.html": (
        {"rows": [], "action": "", "actions": [], "before": None, "older": None},
        "registry audit --action token.created",
    ),
}


@pytest.mark.parametrize("name", list(EMPTY))
def test_empty_pages_say_which_command_fills_them(name: str) -> None:
    """A fresh registry's pages (the shared test database is never empty: other tests write to it)."""
    context, command = EMPTY[name]
    html = environment().get_template(name).render(viewer=None, csrf="", Role=Role, path="/ui/x", **context)
    assert 'class="empty"' in html and command in html and "<table" not in html
