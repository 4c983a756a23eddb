"""Pages of registered models: the list, one model, one version (files, downloads, promotion)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from litestar.response import Redirect, Stream, Template

from monitoring import checks
from registry.api._bytes import blob_response
from registry.api.v1._common import int64_or_none, path_param
from registry.db import Database
from registry.domain.auth import Role
from registry.domain.models import Alias, Promotion, RegisteredModel
from registry.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from registry.services import aliases, gates, models, runs, search, versions
from registry.services.auth import Actor, require
from registry.settings import Settings
from registry.storage import BlobStore
from registry.ui import sessions
from registry.ui._render import page

MODELS_PAGE = 50
VERSIONS_PAGE = 50
HISTORY = 50
GATE_RUNS = 20
DRIFT_CHECKS = 20


@dataclass(frozen=True, slots=True)
class ModelRow:
    model: RegisteredModel
    aliases: list[Alias]
    last_promotion: Promotion | None


def name_filter(text: str) -> str:
    """An MLflow filter finding models whose name contains ``text``, any case: LIKE's wildcards and the
    string's quotes and backslashes in ``text`` are escaped, so it matches literally."""
    pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    literal = pattern.replace("\\", "\\\\").replace("'", "''")
    return f"name ILIKE '%{literal}%'"


def protected(settings: Settings) -> frozenset[str]:
    return frozenset(name.lower() for name in settings.protected_aliases)


def may_move(actor: Actor, alias: str, settings: Settings) -> bool:
    """Whether ``actor``'s role may move ``alias`` (the service checks again; this only hides buttons)."""
    return actor.allows(Role.maintainer if alias in protected(settings) else Role.writer)


def previous_holders(held: list[Alias], history: list[Promotion]) -> dict[str, int]:
    """For each alias, the version a rollback would return it to, when the (newest first) ``history`` shows
    it: the ``from`` of the promotion that brought the current holder in. Rollbacks' own rows are skipped,
    as the service skips them, so rollbacks stack."""
    found: dict[str, int] = {}
    for alias in held:
        for p in history:
            if p.alias == alias.name and p.to_version == alias.version and p.action == "promote":
                if p.from_version is not None:
                    found[alias.name] = p.from_version
                break
    return found


def _version(name: str, number: int) -> int:
    if int64_or_none(number) is None:
        raise NotFound(f"model {name!r} has no version {number}")
    return number


class ModelPages(Controller):
    path = "/ui"
    guards = [sessions.signed_in]
    include_in_schema = False

    @get("/")
    async def models_list(
        self, request: Request[Any, Any, Any], db: Database, q: str = "", after: str = ""
    ) -> Template:
        query = q.strip()[:256]
        async with db.read() as session:
            found, next_page = await search.search_models(
                session,
                filter=name_filter(query) if query else "",
                max_results=MODELS_PAGE,
                page_token=after or None,
            )
            # Two queries for the whole page, whatever its length (not two per model).
            ids = [model.id for model in found]
            held = await aliases.list_for_models(session, model_ids=ids)
            last = await aliases.last_promotions(session, model_ids=ids)
        rows = [ModelRow(model=m, aliases=held[m.id], last_promotion=last.get(m.id)) for m in found]
        return page(request, "models.html", rows=rows, q=query, next_page=next_page, searched=bool(query))

    @get("/models/{name:str}")
    async def model(
        self, request: Request[Any, Any, Any], name: str, db: Database, settings: Settings, before: int = 0
    ) -> Template:
        """A model with a page of its versions, newest first. Pages are keyed on the version number
        (``before``), not an offset: the thousandth page costs what the first does."""
        return await self._model_page(request, db, settings, name, before)

    @post("/models/{name:str}/aliases/{alias:str}/rollback", status_code=303)
    async def rollback(
        self, request: Request[Any, Any, Any], name: str, alias: str, db: Database, settings: Settings
    ) -> Response[Any]:
        """Move ``alias`` back to the version that held it before, as `registry rollback`: no gate run needed
        (it held the alias before), the alias' role is. The form carries the version the alias held when the
        page was drawn; if it moved since, nothing changes."""
        form = await sessions.checked_form(request)
        viewer = sessions.viewer_of(request)
        # The service checks the alias' role too, but only once it found something to roll back to: a
        # forged form from a role that may not move the alias is refused first, whatever the history.
        needed = Role.maintainer if alias.lower() in protected(settings) else Role.writer
        require(viewer.actor, needed, action=f"rolling back {alias}")
        expect_text = form.get("expect", "")
        if not (expect_text.isascii() and expect_text.isdigit()) or int64_or_none(int(expect_text)) is None:
            raise InvalidInput("the form lost the version the alias held; reload the page", field="expect")
        reason = form.get("reason", "").strip()
        try:
            async with db.write() as session:
                move = await aliases.rollback(
                    session,
                    model_name=name,
                    alias=alias,
                    actor=viewer.actor,
                    protected=protected(settings),
                    reason=reason or None,
                    expect=int(expect_text),
                )
        except Conflict as exc:
            message = exc.message
            if exc.code == "alias_moved":
                now = exc.extra.get("current")
                message = f"{alias} moved since you opened this page (it now points at v{now}); nothing was changed."
            return await self._model_page(request, db, settings, name, 0, error=message, status_code=409)
        except NotFound as exc:
            if exc.code == "alias_not_found":
                message = f"{alias} was removed since you opened this page; nothing was changed."
                return await self._model_page(request, db, settings, name, 0, error=message, status_code=409)
            raise
        where = f"/ui/models/{quote(name, safe='')}?rolled_back={quote(move.alias, safe='')}#aliases"
        return Redirect(where, status_code=303)

    async def _model_page(
        self,
        request: Request[Any, Any, Any],
        db: Database,
        settings: Settings,
        name: str,
        before: int,
        *,
        error: str | None = None,
        status_code: int = 200,
    ) -> Template:
        if int64_or_none(before) is None or before < 0:
            raise InvalidInput("before must be a version number", field="before")
        async with db.read() as session:
            model = await models.get(session, name=name)
            held = await aliases.list_for_model(session, model_id=model.id)
            tags = await models.tags_of(session, model_id=model.id)
            # One row past the page says whether an older page exists (no empty last page).
            rows = await versions.list_with_aliases(
                session, model_name=name, limit=VERSIONS_PAGE + 1, after=before, descending=True
            )
            history = await aliases.history(session, model_name=name, limit=HISTORY)
            policies = await gates.list_policies(session, model_name=name)
            monitored = await checks.latest_per_alias(session, model_name=name)
        rows, more = rows[:VERSIONS_PAGE], len(rows) > VERSIONS_PAGE
        older = rows[-1].version.version if more else None
        rolled_back = request.query_params.get("rolled_back")
        return page(
            request,
            "model.html",
            status_code=status_code,
            rolled_back=rolled_back if rolled_back in {a.name for a in held} else None,
            model=model,
            aliases=held,
            tags=tags,
            rows=rows,
            before=before,
            older=older,
            history=history,
            policies=policies,
            monitored=monitored,
            rollbackable=[a.name for a in held if may_move(sessions.viewer_of(request).actor, a.name, settings)],
            previous=previous_holders(held, history),
            # With the whole history in hand, an alias it shows no earlier holder for has none to roll back to.
            history_complete=len(history) < HISTORY,
            error=error,
        )

    @get("/models/{name:str}/versions/{number:int}")
    async def version(
        self, request: Request[Any, Any, Any], name: str, number: int, db: Database, settings: Settings
    ) -> Template:
        return await self._version_page(request, db, settings, name, _version(name, number))

    @post("/models/{name:str}/versions/{number:int}/promote", status_code=303)
    async def promote(
        self, request: Request[Any, Any, Any], name: str, number: int, db: Database, settings: Settings
    ) -> Response[Any]:
        """Move an alias to this version with a reason. The form carries the version the alias held when the
        page was drawn (``expect``, 0 for none); the move is a compare-and-swap on it, as the API's."""
        form = await sessions.checked_form(request)
        number = _version(name, number)
        alias, reason = form.get("alias", ""), form.get("reason", "").strip()
        expect_text = form.get("expect", "")
        if not (expect_text.isascii() and expect_text.isdigit()) or int64_or_none(int(expect_text)) is None:
            raise InvalidInput("the form lost the version the alias held; reload the page", field="expect")
        expect = int(expect_text) or None
        force = form.get("force") == "1"
        viewer = sessions.viewer_of(request)
        try:
            async with db.write() as session:
                move = await aliases.set_alias(
                    session,
                    model_name=name,
                    alias=alias,
                    version=number,
                    actor=viewer.actor,
                    protected=protected(settings),
                    reason=reason or None,
                    expect=expect,
                    force=force,
                )
        except Conflict as exc:
            if exc.code != "alias_moved":
                raise
            now = exc.extra.get("current")
            held = f"it now points at v{now}" if now is not None else "it was removed"
            message = f"{alias} moved since you opened this page ({held}); nothing was changed. Check and try again."
            return await self._version_page(request, db, settings, name, number, error=message, status_code=409)
        except (PreconditionFailed, InvalidInput) as exc:
            status = 412 if isinstance(exc, PreconditionFailed) else 400
            return await self._version_page(request, db, settings, name, number, error=exc.message, status_code=status)
        where = f"/ui/models/{quote(name, safe='')}/versions/{number}?promoted={quote(move.alias, safe='')}"
        return Redirect(where, status_code=303)

    @get("/models/{name:str}/versions/{number:int}/files/{path:path}")
    async def download(self, name: str, number: int, path: str, db: Database, store: BlobStore) -> Stream:
        """A file of the version, streamed through the server with the viewer's session (links cannot carry
        an API token)."""
        wanted = path_param(path)
        async with db.read() as session:
            view = await versions.view(session, model_name=name, version=_version(name, number))
        entry = next((f for f in view.files if f.path == wanted), None)
        if entry is None:
            raise NotFound(f"{name} v{number} has no file {wanted!r}")
        return await blob_response(store, entry.sha256, entry.size, filename=wanted.rsplit("/", 1)[-1])

    async def _version_page(
        self,
        request: Request[Any, Any, Any],
        db: Database,
        settings: Settings,
        name: str,
        number: int,
        *,
        error: str | None = None,
        status_code: int = 200,
    ) -> Template:
        actor = sessions.viewer_of(request).actor
        async with db.read() as session:
            view = await versions.view(session, model_name=name, version=number)
            held = await aliases.list_for_model(session, model_id=view.model.id)
            history = await aliases.history(session, model_name=name, version=number, limit=HISTORY)
            gate_runs = await gates.list_runs(session, model=view.model, version=number, limit=GATE_RUNS)
            policies = {p.alias: p for p in await gates.list_policies(session, model_name=name)}
            drift = await checks.list_checks(session, model_name=name, version=number, limit=DRIFT_CHECKS)
            source = await runs.view(session, run_id=view.version.run_id) if view.version.run_id else None
        movable = [a for a in held if a.version != number and may_move(actor, a.name, settings)]
        promoted = request.query_params.get("promoted")
        return page(
            request,
            "version.html",
            status_code=status_code,
            view=view,
            held=held,
            movable=movable,
            may_add=actor.allows(Role.writer),
            protected=sorted(protected(settings)),
            history=history,
            error=error,
            promoted=promoted if promoted in view.aliases else None,
            total=sum(f.size for f in view.files),
            gate_runs=gate_runs,
            policies=policies,
            may_force=actor.allows(Role.maintainer),
            drift=drift,
            source=source,
        )
