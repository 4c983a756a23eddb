"""Pages of experiments and their runs, webhooks and their deliveries (with redelivery), automation jobs and the
audit log.

Each page applies the rules of the API endpoint it mirrors: everyone signed in reads experiments, runs,
webhooks (a webhook's URL redacted below maintainer, as ``GET /api/v1/webhooks`` shows it), deliveries and jobs;
redelivering needs the maintainer role (the service checks it; the button is hidden below it); the audit log is
for admins only, as ``GET /api/v1/audit``.

Reads go through the services where they offer what a page needs. A few small read-only queries live here:
keyset pages the services do not offer (runs newest first after a given run, audit entries newest first) and
cheap aggregates (run counts per experiment, open and failed deliveries per webhook, a few latest metrics per
run). Each one reads only the rows of the page shown, through an index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.response import Redirect, Template

from automations import actions, rules, webhooks
from automations.domain import AutomationJob, Delivery, DeliveryAttempt, Webhook
from registry.api.v1._common import int64_or_none
from registry.db import Database
from registry.domain.auth import Role
from registry.domain.events import Event
from registry.domain.experiments import Experiment
from registry.domain.runs import LatestMetric, Run
from registry.errors import InvalidInput, NotFound
from registry.services import audit, experiments, runs
from registry.services.auth import Actor, require
from registry.ui import sessions
from registry.ui._render import page

EXPERIMENTS_PAGE = 50
RUNS_PAGE = 50
METRICS_SHOWN = 3
"""Latest metrics shown per run in an experiment's run list (the first keys by name, system metrics left out)."""
DELIVERIES_PAGE = 50
JOBS_SHOWN = 100
AUDIT_PAGE = 100
JOB_STATUSES = ("pending", "running", "succeeded", "failed")
RUN_ID_LENGTH = 32


# -- small checks -------------------------------------------------------------------------------------------
def _path_id(text: str, what: str) -> int:
    """An id from the path. The route takes any text so that ``/ui/webhooks/abc`` gets the HTML 404 page too:
    text that is not a number, or a number no BIGINT holds, names nothing (404), as any unknown id."""
    value = int(text) if re.fullmatch(r"-?[0-9]{1,40}", text) else None
    if value is None or int64_or_none(value) is None:
        raise NotFound(f"{what} {text[:40]!r} does not exist")
    return value


def _query_id(value: int | None, field: str) -> int | None:
    """A cursor from the query string: 400 when no BIGINT holds it (the database would refuse it)."""
    if value is not None and int64_or_none(value) is None:
        raise InvalidInput(f"{field} is out of range", field=field)
    return value


def _own_int(text: str) -> int | None:
    """A non-negative BIGINT from a field the pages write themselves (a form's ``before``, the notice's
    ``redelivered``); None for anything else (such a field is only dropped, never an error)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        return None
    return int64_or_none(int(text))


def shown_url(hook: Webhook, actor: Actor) -> tuple[str, bool]:
    """The webhook's URL as the API shows it to ``actor`` (in full for maintainers; scheme and host with
    ``/***`` below), and whether it was redacted."""
    redacted = None if actor.allows(Role.maintainer) else webhooks.redacted_url(hook.url)
    return (redacted, True) if redacted is not None else (hook.url, False)


# -- rows the templates draw --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExperimentRow:
    experiment: Experiment
    runs: int


@dataclass(frozen=True, slots=True)
class RunRow:
    run: Run
    metrics: list[LatestMetric]
    """The first ``METRICS_SHOWN`` latest metrics by key (no ``system/`` ones)."""
    more_metrics: int


@dataclass(frozen=True, slots=True)
class WebhookRow:
    hook: Webhook
    url: str
    redacted: bool
    open: int
    """Deliveries pending (waiting for their first or next attempt)."""
    failed: int
    """Deliveries that failed for good (every attempt used)."""


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    delivery: Delivery
    event: Event
    attempts: list[DeliveryAttempt]


@dataclass(frozen=True, slots=True)
class JobRow:
    job: AutomationJob
    rule: str | None
    """The rule that queued it (None: asked for through an API or a signed hook, or the rule is gone)."""

    @property
    def model(self) -> str | None:
        value = self.job.params.get("model")
        return str(value) if value else None

    @property
    def version(self) -> int | None:
        value = self.job.params.get("version")
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    @property
    def gate_run_id(self) -> int | None:
        value = (self.job.result or {}).get("gate_run_id")
        return value if isinstance(value, int) else None


class AdminPages(Controller):
    path = "/ui"
    guards = [sessions.signed_in]
    include_in_schema = False

    # -- experiments and runs ------------------------------------------------------------------------------
    @get("/experiments")
    async def experiments_list(self, request: Request[Any, Any, Any], db: Database, after: int = -1) -> Template:
        """Experiments by id, ``EXPERIMENTS_PAGE`` at a time after the experiment ``after`` (keyset)."""
        _query_id(after, "after")
        async with db.read() as session:
            found = await experiments.list_experiments(session, limit=EXPERIMENTS_PAGE + 1, after=after)
            more = len(found) > EXPERIMENTS_PAGE
            found = found[:EXPERIMENTS_PAGE]
            counts = await runs.counts_by_experiment(session, [e.id for e in found])
        rows = [ExperimentRow(experiment=e, runs=counts.get(e.id, 0)) for e in found]
        return page(
            request,
            "experiments.html",
            rows=rows,
            after=after,
            next_after=rows[-1].experiment.id if more else None,
        )

    @get("/experiments/{experiment_id:str}")
    async def experiment(
        self, request: Request[Any, Any, Any], experiment_id: str, db: Database, before: str = ""
    ) -> Template:
        """An experiment's runs, newest first, ``RUNS_PAGE`` at a time; ``before`` is the last run of the
        previous page. Each run has a checkbox of the compare form."""
        before = before.strip()
        async with db.read() as session:
            experiment = await experiments.get(session, experiment_id=_path_id(experiment_id, "experiment"))
            tags = await experiments.tags_of(session, experiment_id=experiment.id)
            found = await runs.page_of_experiment(
                session, experiment_id=experiment.id, before=before, limit=RUNS_PAGE + 1
            )
            more = len(found) > RUNS_PAGE
            found = found[:RUNS_PAGE]
            metrics = await runs.latest_by_run(session, [r.id for r in found])
        rows = [
            RunRow(
                run=r,
                metrics=metrics.get(r.id, [])[:METRICS_SHOWN],
                more_metrics=max(len(metrics.get(r.id, [])) - METRICS_SHOWN, 0),
            )
            for r in found
        ]
        return page(
            request,
            "experiment.html",
            experiment=experiment,
            tags=tags,
            rows=rows,
            before=before,
            older=rows[-1].run.id if more else None,
        )

    # -- webhooks ------------------------------------------------------------------------------------------
    @get("/webhooks")
    async def webhooks_list(self, request: Request[Any, Any, Any], db: Database) -> Template:
        actor = sessions.viewer_of(request).actor
        async with db.read() as session:
            hooks = await webhooks.list_webhooks(session)
            counts = await webhooks.open_delivery_counts(session)
        rows = []
        for hook in hooks:
            url, redacted = shown_url(hook, actor)
            rows.append(
                WebhookRow(
                    hook=hook,
                    url=url,
                    redacted=redacted,
                    open=counts.get((hook.id, "pending"), 0),
                    failed=counts.get((hook.id, "failed"), 0),
                )
            )
        return page(request, "webhooks.html", rows=rows, may_manage=actor.allows(Role.maintainer))

    @get("/webhooks/{webhook_id:str}")
    async def webhook(
        self, request: Request[Any, Any, Any], webhook_id: str, db: Database, before: int | None = None
    ) -> Template:
        return await self._webhook_page(request, db, _path_id(webhook_id, "webhook"), before=before)

    @post("/webhooks/{webhook_id:str}/deliveries/{delivery_id:str}/redeliver", status_code=303)
    async def redeliver(
        self, request: Request[Any, Any, Any], webhook_id: str, delivery_id: str, db: Database
    ) -> Response[Any]:
        """Send a delivery again (same ``webhook-id``; ``POST /api/v1/webhooks/deliveries/{id}/redeliver``),
        maintainers only; back to the webhook's page with a notice."""
        form = await sessions.checked_form(request)
        actor = sessions.viewer_of(request).actor
        # The role first, as the API's guard: below maintainer, trying ids tells nothing.
        require(actor, Role.maintainer, action="redelivering a webhook")
        hook_id = _path_id(webhook_id, "webhook")
        number = _path_id(delivery_id, "delivery")
        before = _own_int(form.get("before", ""))
        try:
            async with db.write() as session:
                found = await session.get(Delivery, number)
                if found is None or found.webhook_id != hook_id:
                    raise NotFound(f"webhook {hook_id} has no delivery {number}")
                await webhooks.redeliver(session, delivery_id=number, actor=actor)
        except InvalidInput as exc:
            return await self._webhook_page(request, db, hook_id, before=before, error=exc.message, status_code=409)
        where = f"/ui/webhooks/{hook_id}?redelivered={number}" + (f"&before={before}" if before else "")
        return Redirect(where, status_code=303)

    async def _webhook_page(
        self,
        request: Request[Any, Any, Any],
        db: Database,
        webhook_id: int,
        *,
        before: int | None,
        error: str | None = None,
        status_code: int = 200,
    ) -> Template:
        """The webhook and a page of its deliveries, newest first (keyset on the delivery id, ``before``)."""
        actor = sessions.viewer_of(request).actor
        before = _query_id(before, "before")
        async with db.read() as session:
            hook = await webhooks.get(session, webhook_id=webhook_id)
            found = await webhooks.list_deliveries(
                session, webhook_id=hook.id, limit=DELIVERIES_PAGE + 1, before=before
            )
            more = len(found) > DELIVERIES_PAGE
            found = found[:DELIVERIES_PAGE]
            history = await webhooks.attempts_of(session, delivery_ids=[d.id for d, _ in found])
        rows = [DeliveryRow(delivery=d, event=e, attempts=history.get(d.id, [])) for d, e in found]
        url, redacted = shown_url(hook, actor)
        return page(
            request,
            "webhook.html",
            status_code=status_code,
            hook=hook,
            url=url,
            redacted=redacted,
            rows=rows,
            before=before,
            older=rows[-1].delivery.id if more else None,
            may_redeliver=actor.allows(Role.maintainer),
            redelivered=_own_int(request.query_params.get("redelivered", "")),
            error=error,
        )

    # -- automation jobs -----------------------------------------------------------------------------------
    @get("/jobs")
    async def jobs(self, request: Request[Any, Any, Any], db: Database, status: str = "") -> Template:
        """The newest ``JOBS_SHOWN`` automation jobs (``GET /api/v1/automations/jobs``), of one status if
        asked."""
        status = status.strip().lower()
        if status and status not in JOB_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(JOB_STATUSES)}", field="status")
        async with db.read() as session:
            found = await actions.list_jobs(session, status=status or None, limit=JOBS_SHOWN)
            names = {r.id: r.name for r in await rules.list_rules(session)} if found else {}
        rows = [JobRow(job=j, rule=names.get(j.rule_id) if j.rule_id is not None else None) for j in found]
        return page(request, "jobs.html", rows=rows, status=status, statuses=JOB_STATUSES, limit=JOBS_SHOWN)

    # -- audit log -----------------------------------------------------------------------------------------
    @get("/audit")
    async def audit(
        self, request: Request[Any, Any, Any], db: Database, action: str = "", before: int | None = None
    ) -> Template:
        """The audit log, newest first, ``AUDIT_PAGE`` entries at a time; admins only, as the API's."""
        require(sessions.viewer_of(request).actor, Role.admin, action="reading the audit log")
        action = action.strip()[:64]
        before = _query_id(before, "before")
        async with db.read() as session:
            found = await audit.newest_first(session, action=action, before=before, limit=AUDIT_PAGE + 1)
            known = await audit.actions(session)
        more = len(found) > AUDIT_PAGE
        found = found[:AUDIT_PAGE]
        return page(
            request,
            "audit.html",
            rows=found,
            action=action,
            actions=known,
            before=before,
            older=found[-1].id if more else None,
        )
