"""Why a version was trusted, in the UI: the gate report view (each estimate and interval drawn against its
threshold), gate policies and the force flow, rollback, lineage and provenance (the uncommitted diff), and a
drift check with its Evidently report in a sandboxed frame. In-process, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import httpx
import pytest
from litestar import Litestar

from monitoring.report import CONTENT_SECURITY_POLICY
from registry.settings import Settings
from registry.ui.evidence import WIDTH, place
from registry.ui.runs import diff_lines
from tests.conftest import Tokens
from tests.monitoring.monitor_helpers import HOUR, frame, ingest, last_full_hour, new_model, set_baseline
from tests.ui.conftest import csrf_of, sign_in
from tests.ui.seed import DIFF, GATE_SPEC, Seeded, seed

ROW = re.compile(r'<tr data-gate="([^"]+)">(.*?)</tr>', re.S)
CX = re.compile(r'class="estimate" cx="([\d.]+)"')
THRESHOLD_X = re.compile(r'class="threshold" x1="([\d.]+)"')
INTERVAL = re.compile(r'class="interval" x1="([\d.]+)" y1="17" x2="([\d.]+)"')


def another(app: Litestar) -> httpx.AsyncClient:
    """A second browser: its own cookies."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry")


async def signed_in(client: httpx.AsyncClient, token: str) -> httpx.AsyncClient:
    assert (await sign_in(client, token)).status_code == 303
    return client


@pytest.fixture
async def admin(browser_less: httpx.AsyncClient, api_tokens: Tokens) -> httpx.AsyncClient:
    return await signed_in(browser_less, api_tokens.admin)


def drawn(row: str) -> tuple[float, float, float, float]:
    """(estimate x, threshold x, interval left x, interval right x) of a row's drawing."""
    estimate, threshold, interval = CX.search(row), THRESHOLD_X.search(row), INTERVAL.search(row)
    assert estimate and threshold and interval, row
    return float(estimate[1]), float(threshold[1]), float(interval[1]), float(interval[2])


# -- drawing -------------------------------------------------------------------------------------------------
def test_place_puts_estimate_interval_and_threshold_in_order_on_the_line() -> None:
    result = {"estimate": 0.995, "threshold": 0.95, "interval": {"lower": 0.993, "upper": 0.997}}
    e = place(result)
    assert e is not None and e.lower is not None and e.upper is not None
    assert e.threshold is not None and e.estimate is not None
    assert 0 < e.threshold < e.lower < e.estimate < e.upper < WIDTH
    assert not e.lo_open and not e.hi_open
    # The scale is linear: equal gaps in value are equal gaps on the line.
    mid = place({"estimate": 0.5, "threshold": 0.0, "interval": {"lower": 0.0, "upper": 1.0}})
    assert mid is not None and mid.estimate is not None and mid.lower is not None and mid.upper is not None
    assert mid.estimate - mid.lower == pytest.approx(mid.upper - mid.estimate)


def test_place_draws_open_sides_to_the_edge_and_nothing_without_numbers() -> None:
    one_sided = place({"estimate": 0.2, "threshold": 0.3, "interval": {"lower": None, "upper": 0.25}})
    assert one_sided is not None and one_sided.lo_open and not one_sided.hi_open
    assert one_sided.lower is not None and one_sided.lower < 10
    assert place({"estimate": None, "threshold": 0.5, "interval": {"lower": None, "upper": None}}) is None
    flat = place({"estimate": 1.0, "threshold": 1.0, "interval": {"lower": 1.0, "upper": 1.0}})
    assert flat is not None and flat.estimate is not None and 0 < flat.estimate < WIDTH
    nan = place({"estimate": float("nan"), "threshold": None, "interval": {"lower": 0.1, "upper": 0.2}})
    assert nan is not None and nan.estimate is None and nan.threshold is None


def test_diff_lines_tell_headers_from_changes() -> None:
    kinds = [(line.kind, line.text) for line in diff_lines(DIFF.decode())]
    assert kinds[0] == ("file", "diff --git a/train.py b/train.py")
    assert ("file", "--- a/train.py") in kinds and ("file", "+++ b/train.py") in kinds
    assert ("hunk", "@@ -1,4 +1,4 @@") in kinds
    # After the hunk header, a removed line that reads like a header is a removal.
    assert ("del", "--- a removed line that looks like a header") in kinds
    assert ("del", "-lr = 0.1") in kinds and ("add", "+lr = 0.01") in kinds and ("ctx", " epochs = 3") in kinds


# -- the gate report view ------------------------------------------------------------------------------------
async def test_gate_report_view_draws_each_result_against_its_threshold(
    admin: httpx.AsyncClient, seeded: Seeded
) -> None:
    page = await admin.get(f"/ui/gate-runs/{seeded.gate_run_id}")
    assert page.status_code == 200, page.text
    assert 'data-testid="verdict">FAIL<' in page.text
    rows = dict(ROW.findall(page.text))
    assert set(rows) == {"accuracy", "near-perfect"}

    passing = rows["accuracy"]
    assert 'data-status="PASS"' in passing and "&gt;= 0.9500" in passing
    estimate, threshold, left, right = drawn(passing)
    assert threshold < left < estimate < right, "a pass: the whole interval clears the requirement"

    unsure = rows["near-perfect"]
    assert 'data-status="INCONCLUSIVE"' in unsure
    estimate, threshold, left, right = drawn(unsure)
    assert left < threshold < right, "inconclusive: the interval straddles the requirement"
    # The numbers are there for screen readers and copying, not only in the drawing.
    assert re.search(
        r'aria-label="estimate 0\.99\d\d, interval 0\.99\d\d to 0\.99\d\d, requirement &gt;= 0\.9940"', unsure
    )
    assert "kind: proportion" in page.text  # the spec itself


async def test_version_page_lists_gate_runs_lineage_and_provenance(admin: httpx.AsyncClient, seeded: Seeded) -> None:
    page = await admin.get(f"/ui/models/{seeded.model}/versions/3")
    assert page.status_code == 200
    runs_table = page.text.split('data-testid="gate-runs"')[1].split("</table>")[0]
    assert f'href="/ui/gate-runs/{seeded.gate_run_id}"' in runs_table and ">fail<" in runs_table
    lineage = page.text.split('class="lineage"')[1].split("</ol>")[0]
    assert f'href="/ui/runs/{seeded.run_id}"' in lineage and "<strong>v3</strong>" in lineage
    assert f"{seeded.model}-train v1" in lineage  # the dataset the run consumed
    assert f'href="/ui/runs/{seeded.run_id}#diff"' in page.text and "Python 3.12.7" in page.text
    assert "No drift check of this version" in page.text
    # A version uploaded as files has no run: the lineage says so instead of failing.
    uploaded = await admin.get(f"/ui/models/{seeded.model}/versions/1")
    assert uploaded.status_code == 200 and "none (uploaded files)" in uploaded.text
    assert "No gate run recorded for this version" in uploaded.text


async def test_run_page_shows_the_uncommitted_diff_highlighted_and_downloadable(
    admin: httpx.AsyncClient, seeded: Seeded
) -> None:
    page = await admin.get(f"/ui/runs/{seeded.run_id}")
    assert page.status_code == 200
    shown = page.text.split('data-testid="diff"')[1].split("</pre>")[0]
    assert '<span class="del">-lr = 0.1</span>' in shown and '<span class="add">+lr = 0.01</span>' in shown
    assert '<span class="file">diff --git a/train.py b/train.py</span>' in shown
    assert "1 file, " in page.text and "+1</span>" in page.text and "\u22122</span>" in page.text
    assert f'href="/ui/models/{seeded.model}/versions/3"' in page.text  # registered as
    download = await admin.get(f"/ui/runs/{seeded.run_id}/diff")
    assert download.status_code == 200 and download.content == DIFF
    assert "attachment" in download.headers["content-disposition"]
    no_diff = await admin.get(f"/ui/runs/{'0' * 32}/diff")
    assert no_diff.status_code == 404


async def test_a_long_diff_is_cut_at_a_line_and_says_so(
    admin: httpx.AsyncClient, app_client: httpx.AsyncClient
) -> None:
    from registry.ui.runs import DIFF_SHOWN
    from tests.ui.seed import upload_blob

    body = b"diff --git a/big.txt b/big.txt\n@@ -0,0 +1,100000 @@\n" + b"".join(
        b"+line %06d of a generated file\n" % i for i in range(12_000)
    )
    assert len(body) > DIFF_SHOWN
    blob = await upload_blob(app_client, app_client.headers["authorization"].split()[1], body)
    run = await app_client.post(
        "/api/v1/runs/", json={"git": {"commit": "a" * 40, "dirty": True, "diff_sha256": blob["sha256"]}}
    )
    page = await admin.get(f"/ui/runs/{run.json()['id']}")
    shown = page.text.split('data-testid="diff"')[1].split("</pre>")[0]
    lines = re.findall(r'<span class="(\w+)">(.*?)</span>', shown)
    assert 1000 < len(lines) < 12_002
    assert all(re.fullmatch(r"\+line \d{6} of a generated file", text) for kind, text in lines if kind == "add")
    assert "the page shows its first" in page.text


# -- policies, force and rollback ----------------------------------------------------------------------------
async def test_force_past_a_gate_policy_is_for_maintainers_with_a_reason(
    browser_less: httpx.AsyncClient, app_client: httpx.AsyncClient, ui_app: Litestar, api_tokens: Tokens
) -> None:
    mine = await seed(app_client, api_tokens.admin)
    policy = await app_client.put(f"/api/v1/models/{mine.model}/gate-policies/staging", json={"spec": GATE_SPEC})
    assert policy.status_code == 200, policy.text
    url = f"/ui/models/{mine.model}/versions/3"

    writer = await signed_in(browser_less, api_tokens.writer)
    page = await writer.get(url)
    assert 'name="force"' not in page.text and "gated" in page.text
    refused = await writer.post(
        f"{url}/promote", data={"csrf": csrf_of(page), "alias": "staging", "expect": "2", "reason": "ship it"}
    )
    assert refused.status_code == 412 and "failed gate run" in refused.text
    forged = await writer.post(
        f"{url}/promote",
        data={"csrf": csrf_of(page), "alias": "staging", "expect": "2", "reason": "ship it", "force": "1"},
    )
    assert forged.status_code == 403 and "maintainer" in forged.text

    async with another(ui_app) as other:
        maintainer = await signed_in(other, api_tokens.maintainer)
        page = await maintainer.get(url)
        assert 'name="force"' in page.text
        no_reason = await maintainer.post(
            f"{url}/promote", data={"csrf": csrf_of(page), "alias": "staging", "expect": "2", "force": "1"}
        )
        assert no_reason.status_code == 400 and "reason" in no_reason.text
        forced = await maintainer.post(
            f"{url}/promote",
            data={"csrf": csrf_of(page), "alias": "staging", "expect": "2", "force": "1", "reason": "hotfix"},
        )
        assert forced.status_code == 303, forced.text
        model_page = await maintainer.get(f"/ui/models/{mine.model}")
        assert "forced" in model_page.text and "hotfix" in model_page.text
        assert re.search(r'title="spec [0-9a-f]{64}">[0-9a-f]{12}</span>', model_page.text)  # the policy's spec
    held = (await app_client.get(f"/api/v1/models/{mine.model}/aliases/staging")).json()
    assert held["version"] == 3


async def test_rollback_from_the_model_page_is_a_compare_and_swap_with_the_api_rules(
    browser_less: httpx.AsyncClient, app_client: httpx.AsyncClient, ui_app: Litestar, api_tokens: Tokens
) -> None:
    mine = await seed(app_client, api_tokens.admin)
    moved = await app_client.put(f"/api/v1/models/{mine.model}/aliases/staging", json={"version": 3, "reason": "try"})
    assert moved.status_code == 200
    url = f"/ui/models/{mine.model}"

    writer = await signed_in(browser_less, api_tokens.writer)
    page = await writer.get(url)
    assert 'data-testid="rollback-staging">Roll back to v2<' in page.text
    assert 'data-testid="rollback-production"' not in page.text  # protected: maintainers only
    forged = await writer.post(f"{url}/aliases/production/rollback", data={"csrf": csrf_of(page), "expect": "1"})
    assert forged.status_code == 403

    # Someone moves staging after the page was drawn: the rollback changes nothing and says so.
    await app_client.put(f"/api/v1/models/{mine.model}/aliases/staging", json={"version": 1, "reason": "other"})
    stale = await writer.post(
        f"{url}/aliases/staging/rollback", data={"csrf": csrf_of(page), "expect": "3", "reason": "bad v3"}
    )
    assert stale.status_code == 409 and "moved since you opened this page" in stale.text
    assert (await app_client.get(f"{url.replace('/ui/', '/api/v1/')}/aliases/staging")).json()["version"] == 1

    page = await writer.get(url)
    assert 'data-testid="rollback-staging">Roll back to v3<' in page.text
    done = await writer.post(
        f"{url}/aliases/staging/rollback", data={"csrf": csrf_of(page), "expect": "1", "reason": "v1 was a mistake"}
    )
    assert done.status_code == 303 and "rolled_back=staging" in done.headers["location"]
    assert (await app_client.get(f"/api/v1/models/{mine.model}/aliases/staging")).json()["version"] == 3
    after = await writer.get(done.headers["location"])
    assert "staging was rolled back." in after.text
    assert re.search(r"<td>rollback</td>\s*<td>test-writer</td>\s*<td>v1 was a mistake</td>", after.text)

    async with another(ui_app) as other:
        reader = await signed_in(other, api_tokens.reader)
        page = await reader.get(url)
        assert 'data-testid="rollback-' not in page.text
        refused = await reader.post(f"{url}/aliases/staging/rollback", data={"csrf": csrf_of(page), "expect": "3"})
        assert refused.status_code == 403
        no_csrf = await reader.post(f"{url}/aliases/staging/rollback", data={"expect": "3"})
        assert no_csrf.status_code == 403
    assert (await app_client.get(f"/api/v1/models/{mine.model}/aliases/staging")).json()["version"] == 3

    # production never had an earlier holder: a clear refusal, not an error.
    async with another(ui_app) as third:
        maintainer = await signed_in(third, api_tokens.maintainer)
        page = await maintainer.get(url)
        # The whole history is on the page and shows no earlier holder: no button, a word instead.
        assert 'data-testid="rollback-production"' not in page.text and "no earlier holder" in page.text
        none = await maintainer.post(f"{url}/aliases/production/rollback", data={"csrf": csrf_of(page), "expect": "1"})
        assert none.status_code == 409 and "no earlier holder" in none.text
        bad = await maintainer.post(f"{url}/aliases/production/rollback", data={"csrf": csrf_of(page), "expect": "x"})
        assert bad.status_code == 400


# -- drift ---------------------------------------------------------------------------------------------------
async def test_drift_check_page_frames_the_evidently_report_in_a_sandbox(
    admin: httpx.AsyncClient, app_client: httpx.AsyncClient, ui_app: Litestar
) -> None:
    model = await new_model(app_client)
    await set_baseline(app_client, model, 1, frame(600, seed=1))
    moved = await app_client.put(f"/api/v1/models/{model}/aliases/production", json={"version": 1, "reason": "go"})
    assert moved.status_code == 200
    assert (
        await app_client.put(f"/api/v1/models/{model}/monitor", json={"spec": "version: 1\nmin_rows: 100\n"})
    ).status_code == 200
    hour = last_full_hour()
    assert (await ingest(app_client, model, frame(300, seed=41, start=hour, shift=2.0))).status_code == 200
    check = (
        await app_client.post(
            f"/api/v1/models/{model}/monitor/checks",
            params={"alias": "production", "window": "1h", "end": (hour + HOUR).isoformat()},
        )
    ).json()
    assert check["drift_detected"] is True

    model_page = await admin.get(f"/ui/models/{model}")
    assert f'href="/ui/models/{model}/drift/{check["id"]}">drift</a>' in model_page.text
    version_page = await admin.get(f"/ui/models/{model}/versions/1")
    assert f'href="/ui/models/{model}/drift/{check["id"]}">#{check["id"]}</a>' in version_page.text
    # The newest check's report is embedded on the version page too, sandboxed, loaded only when opened.
    embedded = re.search(r'<iframe[^>]*data-testid="version-drift-report"[^>]*>', version_page.text)
    assert embedded is not None and 'sandbox="allow-scripts"' in embedded[0] and 'loading="lazy"' in embedded[0]
    assert f'src="/ui/models/{model}/drift/{check["id"]}/report"' in embedded[0]

    page = await admin.get(f"/ui/models/{model}/drift/{check['id']}")
    assert page.status_code == 200
    assert 'data-testid="drift-status">drift<' in page.text and "amount" in page.text
    frame_tag = re.search(r"<iframe[^>]*>", page.text)
    assert frame_tag is not None
    assert 'sandbox="allow-scripts"' in frame_tag[0] and "allow-same-origin" not in frame_tag[0]
    report_url = re.search(r'src="([^"]+)"', frame_tag[0])
    assert report_url is not None

    served = await admin.get(report_url[1])
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/html")
    policy = served.headers["content-security-policy"]
    # The report's own policy, except that this site's pages may frame it.
    assert policy == CONTENT_SECURITY_POLICY.replace("frame-ancestors 'none'", "frame-ancestors 'self'")
    assert "sandbox allow-scripts" in policy and "connect-src 'none'" in policy
    assert "amount" in served.text
    # Signed out, the report is not served.
    async with another(ui_app) as stranger:
        assert (await stranger.get(report_url[1])).status_code == 303
    assert (await admin.get(f"/ui/models/{model}/drift/999999999")).status_code == 404
    assert (await admin.get(f"/ui/models/{model}/drift/99999999999999999999")).status_code in (400, 404)


async def test_gate_run_and_drift_pages_refuse_unknown_ids_with_a_page(admin: httpx.AsyncClient) -> None:
    for path in ("/ui/gate-runs/999999999", "/ui/gate-runs/0", "/ui/gate-runs/99999999999999999999"):
        answer = await admin.get(path)
        assert answer.status_code in (400, 404), path
        assert answer.headers["content-type"].startswith("text/html")


# -- bad input gets a page, never a 500 ------------------------------------------------------------------------
def test_diff_lines_end_lines_only_at_newlines() -> None:
    lines = diff_lines("@@ -1 +1 @@\r\n+a\u2028b\x0cc\n-d\n")
    assert [(line.kind, line.text) for line in lines] == [
        ("hunk", "@@ -1 +1 @@"),
        ("add", "+a\u2028b\x0cc"),
        ("del", "-d"),
    ]
    assert diff_lines("") == []


async def test_odd_environments_and_missing_diff_bytes_still_show_the_run(
    admin: httpx.AsyncClient, app_client: httpx.AsyncClient, settings: Settings
) -> None:
    from tests.ui.seed import upload_blob

    token = app_client.headers["authorization"].split()[1]
    blob = await upload_blob(app_client, token, b"diff --git a/x b/x\n@@ -1 +1 @@\n-x\n+y\n")
    run = (
        await app_client.post(
            "/api/v1/runs/",
            json={
                "environment": {"packages": ["numpy==2.1"], "python": 3},
                "git": {"commit": "b" * 40, "dirty": True, "diff_sha256": blob["sha256"]},
            },
        )
    ).json()
    page = await admin.get(f"/ui/runs/{run['id']}")
    assert page.status_code == 200 and "numpy==2.1" in page.text and '<span class="add">+y</span>' in page.text
    # The blob's bytes vanish from the store (a broken disk, a bucket emptied by hand): the page still shows.
    sha = blob["sha256"]
    (settings.data_dir / "blobs" / sha[:2] / sha[2:4] / sha).unlink()
    page = await admin.get(f"/ui/runs/{run['id']}")
    assert page.status_code == 200 and "its bytes are missing from the blob store" in page.text
    assert (await admin.get(f"/ui/runs/{run['id']}/diff")).status_code == 404
    # A version registered from that run shows its environment summary without failing either.
    name = f"odd-{run['id'][:8]}"
    assert (await app_client.post("/api/v1/models/", json={"name": name})).status_code == 201
    assert (await app_client.put(f"/api/v1/runs/{run['id']}/artifacts/m/w.bin", content=b"w")).status_code == 201
    made = await app_client.post(f"/api/v1/models/{name}/versions", json={"run_id": run["id"], "path": "m"})
    assert made.status_code == 201, made.text
    assert (await admin.get(f"/ui/models/{name}/versions/1")).status_code == 200


async def test_forms_with_odd_values_are_refused_with_a_page(
    browser_less: httpx.AsyncClient, app_client: httpx.AsyncClient, api_tokens: Tokens
) -> None:
    mine = await seed(app_client, api_tokens.admin, metrics=False)
    maintainer = await signed_in(browser_less, api_tokens.maintainer)
    url = f"/ui/models/{mine.model}"
    page = await maintainer.get(f"{url}/versions/3")
    csrf = csrf_of(page)
    for form in (
        {"alias": "staging", "expect": "\u00b2", "reason": "x"},  # a digit to str.isdigit(), not to int()
        {"alias": "staging", "expect": "2", "reason": "nul \x00 inside"},
    ):
        answer = await maintainer.post(f"{url}/versions/3/promote", data={"csrf": csrf, **form})
        assert answer.status_code == 400, (form, answer.text[:300])
        assert answer.headers["content-type"].startswith("text/html")
    for expect in ("\u00b2", "\u2460"):
        answer = await maintainer.post(f"{url}/aliases/staging/rollback", data={"csrf": csrf, "expect": expect})
        assert answer.status_code == 400
    held = (await app_client.get(f"/api/v1/models/{mine.model}/aliases/staging")).json()
    assert held["version"] == 2, "nothing moved"
    for path in ("/ui/webhooks/--1", "/ui/experiments/--1", "/ui/webhooks/1-", "/ui/experiments/%C2%B2"):
        answer = await maintainer.get(path)
        assert answer.status_code == 404, path
