"""Web sessions in-process: cookie flags, sliding idle expiry, forged cookies, CSRF, revocation."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from litestar import Litestar
from pydantic import SecretStr

from registry.api.app import create_app
from registry.db import Database
from registry.domain.auth import Role
from registry.services import tokens
from registry.services.auth import Actor
from registry.settings import Settings
from registry.storage.local import LocalBlobStore
from registry.ui import sessions
from tests.conftest import Tokens, bearer, unique
from tests.ui.conftest import csrf_of, session_cookie, sign_in
from tests.ui.seed import Seeded

ADMIN = Actor(name="tests", role=Role.admin)


def went_to_sign_in(response: httpx.Response, why: str) -> None:
    assert response.status_code == 303, response.text[:300]
    where = urlsplit(response.headers["location"])
    assert where.path == "/ui/sign-in"
    assert parse_qs(where.query)["why"] == [why]


async def new_token(db: Database, role: Role = Role.reader) -> tuple[str, str, int]:
    async with db.write() as session:
        made = await tokens.create(session, name=unique("ui"), role=role, actor=ADMIN)
    return made.token.name, made.secret, made.token.id


async def visit_with(client: httpx.AsyncClient, value: str, path: str = "/ui/") -> httpx.Response:
    """``path`` with exactly this session cookie (whatever the client's jar holds)."""
    client.cookies.clear()
    return await client.get(path, headers={"cookie": f"mk_session={value}"})


async def key_of(db: Database, token_id: int) -> bytes:
    async with db.read() as session:
        token, _actor, _expires = await tokens.by_id(session, token_id=token_id)
    return sessions.session_key(token.token_hash)


async def test_pages_send_a_stranger_to_sign_in_and_back(browser_less: httpx.AsyncClient, api_tokens: Tokens) -> None:
    went_to_sign_in(await browser_less.get("/ui/models/x?before=5"), "sign_in")
    assert (
        "next=%2Fui%2Fmodels%2Fx%3Fbefore%3D5" in (await browser_less.get("/ui/models/x?before=5")).headers["location"]
    )
    answer = await sign_in(browser_less, api_tokens.reader, next_url="/ui/models/x?before=5")
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/models/x?before=5"


async def test_the_session_cookie_is_httponly_strict_and_scoped(
    browser_less: httpx.AsyncClient, api_tokens: Tokens
) -> None:
    header = session_cookie(await sign_in(browser_less, api_tokens.reader))
    assert header is not None
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["path"] == "Path=/ui"
    assert attributes["max-age"] == f"Max-Age={sessions.IDLE}"
    assert "secure" not in attributes, "plain http: a Secure cookie would never come back"
    value = header.split(";")[0].removeprefix("mk_session=")
    assert api_tokens.reader not in value and api_tokens.reader.split("_", 2)[2] not in value


async def test_over_https_the_cookie_is_secure(ui_app: Litestar, api_tokens: Tokens) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ui_app), base_url="https://registry") as client:
        header = session_cookie(await sign_in(client, api_tokens.reader))
    assert header is not None and "Secure" in header


async def test_a_wrong_token_is_refused_on_the_form(browser_less: httpx.AsyncClient) -> None:
    answer = await sign_in(browser_less, "mk_0123456789ab_not-a-real-secret")
    assert answer.status_code == 401
    assert "unknown token" in answer.text
    assert session_cookie(answer) is None


async def test_sign_in_needs_the_form_from_this_site(browser_less: httpx.AsyncClient, api_tokens: Tokens) -> None:
    # A page elsewhere can post the form but cannot read or set the sign-in cookie it must match.
    answer = await browser_less.post("/ui/sign-in", data={"csrf": "guess", "token": api_tokens.reader})
    assert answer.status_code == 403
    assert session_cookie(answer) is None


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "/api/v1/models"])
async def test_sign_in_never_sends_the_browser_elsewhere(
    browser_less: httpx.AsyncClient, api_tokens: Tokens, target: str
) -> None:
    answer = await sign_in(browser_less, api_tokens.reader, next_url=target)
    assert answer.headers["location"] == "/ui/"


async def test_sign_out_needs_the_csrf_token_and_clears_the_cookie(
    browser_less: httpx.AsyncClient, api_tokens: Tokens
) -> None:
    await sign_in(browser_less, api_tokens.reader)
    page = await browser_less.get("/ui/")
    assert page.status_code == 200
    assert (await browser_less.post("/ui/sign-out", data={})).status_code == 403
    assert (await browser_less.post("/ui/sign-out", data={"csrf": "x" * 43})).status_code == 403
    assert (await browser_less.get("/ui/")).status_code == 200, "a refused sign-out leaves the session"
    out = await browser_less.post("/ui/sign-out", data={"csrf": csrf_of(page)})
    went_to_sign_in(out, "signed_out")
    cleared = session_cookie(out)
    assert cleared is not None and "Max-Age=0" in cleared
    went_to_sign_in(await browser_less.get("/ui/"), "sign_in")


async def test_revoking_the_token_ends_its_sessions(
    browser_less: httpx.AsyncClient, ui_app: Litestar, db: Database, api_tokens: Tokens
) -> None:
    name, secret, _id = await new_token(db)
    await sign_in(browser_less, secret)
    assert (await browser_less.get("/ui/")).status_code == 200
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ui_app), base_url="http://registry") as api:
        assert (await api.delete(f"/api/v1/tokens/{name}", headers=bearer(api_tokens.admin))).status_code == 200
    went_to_sign_in(await browser_less.get("/ui/"), "token_ended")


async def test_revoking_in_the_database_ends_sessions_at_once(browser_less: httpx.AsyncClient, db: Database) -> None:
    # Another replica or the CLI on the database: the next request sees it (no cache in between).
    name, secret, _id = await new_token(db)
    await sign_in(browser_less, secret)
    async with db.write() as session:
        await tokens.revoke(session, name=name, actor=ADMIN)
    went_to_sign_in(await browser_less.get("/ui/"), "token_ended")


async def test_a_forged_or_moved_cookie_is_refused(browser_less: httpx.AsyncClient, db: Database) -> None:
    _name, secret, token_id = await new_token(db)
    _other, _secret, other_id = await new_token(db, Role.admin)
    value = session_cookie(await sign_in(browser_less, secret))
    assert value is not None
    original = value.split(";")[0].removeprefix("mk_session=")
    parts = original.split(".")
    tampered = [
        ".".join([str(other_id), *parts[1:]]),  # another token's id: its key differs
        ".".join([*parts[:4], parts[4][:-2] + ("AA" if not parts[4].endswith("AA") else "BB")]),
        "not-a-session",
        ".".join(parts[:4]),
    ]
    for forged in tampered:
        answer = await visit_with(browser_less, forged)
        assert answer.status_code == 303, forged
        assert "why=session_invalid" in answer.headers["location"]
    assert (await visit_with(browser_less, original)).status_code == 200
    assert token_id != other_id


async def test_sessions_expire_when_idle_and_slide_while_used(browser_less: httpx.AsyncClient, db: Database) -> None:
    _name, _secret, token_id = await new_token(db)
    key = await key_of(db, token_id)
    now = int(time.time())

    async def use(issued: int, seen: int) -> httpx.Response:
        session = sessions.Session(token_id=token_id, nonce="n0nce", issued=issued, seen=seen)
        return await visit_with(browser_less, sessions.encode(session, key))

    went_to_sign_in(await use(now - 3600, now - sessions.IDLE - 5), "session_expired")
    went_to_sign_in(await use(now - sessions.LIFETIME - 5, now - 10), "session_expired")

    fresh = await use(now - 3600, now - 30)
    assert fresh.status_code == 200 and session_cookie(fresh) is None, "re-signed at most every few minutes"

    slid = await use(now - 3600, now - sessions.REFRESH_AFTER - 5)
    assert slid.status_code == 200
    header = session_cookie(slid)
    assert header is not None and "HttpOnly" in header
    decoded = sessions.decode(header.split(";")[0].removeprefix("mk_session="))
    assert decoded is not None
    assert decoded[0].issued == now - 3600, "the lifetime still counts from signing in"
    assert decoded[0].seen >= now


async def test_csrf_tokens_are_bound_to_the_session(ui_app: Litestar, seeded: Seeded, api_tokens: Tokens) -> None:
    transport = httpx.ASGITransport(app=ui_app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://registry") as alice,
        httpx.AsyncClient(transport=transport, base_url="http://registry") as mallory,
    ):
        await sign_in(alice, api_tokens.maintainer)
        await sign_in(mallory, api_tokens.maintainer)
        url = f"/ui/models/{seeded.model}/versions/2"
        theirs = csrf_of(await mallory.get(url))
        form = {"alias": "canary", "expect": "0", "reason": "try"}
        for sent in ({}, {"csrf": ""}, {"csrf": theirs}):
            answer = await alice.post(f"{url}/promote", data={**form, **sent})
            assert answer.status_code == 403, sent
            assert "security token" in answer.text
        mine = csrf_of(await alice.get(url))
        assert mine != theirs
        done = await alice.post(f"{url}/promote", data={**form, "csrf": mine})
        assert done.status_code == 303, done.text[:500]
        assert done.headers["location"] == f"{url}?promoted=canary"


def test_malformed_session_cookies_decode_to_nothing() -> None:
    for value in ("².a.1.1.x", "1.a.²³.1.x", "1.a.1." + "9" * 5000 + ".x", "1.a.1.1", "1..1.1.x", "٣.a.1.1.x"):
        assert sessions.decode(value) is None, value
    assert sessions.decode("12.nonce.3.4.sig") is not None


async def test_a_session_secret_makes_the_database_alone_unable_to_mint_a_cookie(
    db: Database, settings: Settings, api_tokens: Tokens
) -> None:
    configured = settings.model_copy(update={"session_secret": SecretStr("deployment-only")})
    app = create_app(configured, db=db, store=LocalBlobStore(settings.data_dir / "blobs"))
    _name, secret, token_id = await new_token(db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as client:
        assert (await sign_in(client, secret)).status_code == 303
        assert (await client.get("/ui/")).status_code == 200, "signing in works with the secret set"
        # What someone holding only the database could sign: refused under the secret, accepted without it.
        forged = sessions.encode(sessions.new_session(token_id), await key_of(db, token_id))
        went_to_sign_in(await visit_with(client, forged), "session_invalid")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(
            app=create_app(settings, db=db, store=LocalBlobStore(settings.data_dir / "blobs"))
        ),
        base_url="http://registry",
    ) as without:
        assert (await visit_with(without, forged)).status_code == 200
