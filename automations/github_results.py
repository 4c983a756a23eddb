"""The ``github_status`` and ``github_comment`` actions: a gate completed on the registry (by a rule, a hook or a
person) shows on its commit in GitHub.

The commit is the gate run's ``commit_sha``, else the git commit the version's run recorded; the repository is
the rule's ``repository``, else the one named by that run's git remote. The token is the server's secret the rule
names (``MODELKEEP_GITHUB_TOKENS``), sent only to ``MODELKEEP_GITHUB_API_URL``. Running a job twice is harmless:
GitHub keeps the latest status per context, and the comment is found by its marker and edited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import anyio

from automations import github_report as render
from automations.github import GitHubClient, Patience, repository_of
from registry.db import Database
from registry.domain.gates import GateRun
from registry.domain.runs import Run
from registry.errors import InvalidInput, NotFound
from registry.services import gates, versions
from registry.settings import Settings

ACTIONS = ("github_status", "github_comment")
DEFAULT_CONTEXT = "modelkeep/registry"
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


@dataclass(frozen=True, slots=True)
class Target:
    model: str
    run: GateRun
    repository: str
    sha: str


async def _target(db: Database, params: dict[str, Any]) -> Target:
    if not params.get("gate_run_id"):
        raise InvalidInput("the triggering event names no gate run (github actions act on gate.completed)")
    async with db.read() as session:
        model, run = await gates.get_run(session, run_id=int(params["gate_run_id"]))
        version = await versions.get(session, model=model, version=run.version)
        source = await session.get(Run, version.run_id) if version.run_id else None
    sha = run.commit_sha or (source.git_commit if source else None)
    if not sha or not _SHA.match(sha):
        raise InvalidInput(
            f"gate run #{run.id} names no commit: record it with a commit (`registry ci gate --record`, or "
            "`--commit SHA`), or register the version from a run that captured git"
        )
    repository = params.get("repository") or repository_of(source.git_remote if source else None)
    if not repository:
        raise InvalidInput(
            f"no GitHub repository for {model.name} v{run.version}: its run recorded no git remote naming one; "
            "give the rule `repository: owner/name`"
        )
    return Target(model=model.name, run=run, repository=str(repository), sha=sha)


def _token(settings: Settings, name: str) -> str:
    try:
        token = settings.github_token(name)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if token is None:
        raise NotFound(f"this server has no GitHub token named {name!r} (MODELKEEP_GITHUB_TOKENS)")
    return token


async def post(db: Database, settings: Settings, *, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Post the gate run's result to GitHub as a commit status or a PR comment. Raises RegistryError (a
    GitHubError when GitHub refuses or cannot be reached), which fails the job with its message."""
    target = await _target(db, params)
    token = _token(settings, str(params["github_token"]))
    run = target.run
    context = str(params.get("context") or f"{DEFAULT_CONTEXT}/{target.model}")
    gate_run_url = f"{settings.public_url.rstrip('/')}/api/v1/gate-runs/{run.id}" if settings.public_url else None
    about = render.Context(
        name=context,
        candidate=f"`{target.model}` v{run.version}",
        baseline=f"`{target.model}` v{run.baseline_version}" if run.baseline_version else None,
        gate_run_id=run.id,
        gate_run_url=gate_run_url,
        commit=target.sha,
    )
    patience = Patience(max_wait=settings.github_max_wait_seconds)

    def call() -> dict[str, Any]:
        with GitHubClient(settings.github_api_url, token, patience=patience) as github:
            if kind == "github_status":
                github.set_status(
                    target.repository,
                    target.sha,
                    state=render.status_state(run.verdict),
                    description=render.description(run.report),
                    context=context,
                    target_url=gate_run_url,
                )
                return {"repository": target.repository, "commit_sha": target.sha, "context": context}
            numbers = github.pulls_for_commit(target.repository, target.sha)
            comments = [
                github.upsert_comment(
                    target.repository,
                    number,
                    marker=render.marker(context),
                    body=render.comment(run.report, about, key=context),
                ).id
                for number in numbers
            ]
            return {"repository": target.repository, "pull_requests": numbers, "comments": comments}

    # github3 and httpx's sync client block: a worker thread, so the dispatcher's loop keeps running.
    result = await anyio.to_thread.run_sync(call)
    # Not "gate_run_id": job listings read that key as "this job ran gate run N".
    return {**result, "for_gate_run": run.id}
