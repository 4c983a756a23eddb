"""SSRF defences: by default webhooks only go to https on public addresses, checked at subscription and again
on the addresses the host resolves to when sending. Unit tests of automations.ssrf, then a real server."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from automations import ssrf
from automations.delivery import Claimed, send
from registry.errors import InvalidInput
from registry.settings import Settings
from tests.automations.receivers import Stack, client, deliveries, stack, wait_until
from tests.conftest import LiveServer, unique

NAT64 = ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe"]  # caught as part of the reserved ::/8
BLOCKED_ADDRESSES = [
    "127.0.0.1",
    "127.255.255.254",
    "::1",
    "::ffff:127.0.0.1",  # IPv4-mapped IPv6
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "fe80::1",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.0.1",
    "192.168.255.255",
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "fc00::1",
    "fd12:3456::1",
    *NAT64,
]
PUBLIC_ADDRESSES = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


# -- unit: automations.ssrf ---------------------------------------------------------------------------------
@pytest.mark.parametrize("address", BLOCKED_ADDRESSES)
def test_non_public_addresses_are_blocked(address: str) -> None:
    with pytest.raises(ssrf.Blocked, match="not public"):
        ssrf._check_address(ipaddress.ip_address(address))
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(InvalidInput):
        ssrf.check_url(f"https://{literal}/hook", allow_private=False)
    assert ssrf.check_url(f"http://{literal}:8080/hook", allow_private=True)


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_pass(address: str) -> None:
    ssrf._check_address(ipaddress.ip_address(address))
    literal = f"[{address}]" if ":" in address else address
    assert ssrf.check_url(f"https://{literal}/hook", allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # https only
        "ftp://example.com/hook",
        "example.com/hook",
        "https:///hook",
        "https://user:pw@example.com/hook",  # credentials in the URL
        "https://localhost/hook",
        "https://LOCALHOST:8443/hook",
        "https://api.localhost/hook",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://metadata/",
    ],
)
def test_subscription_urls_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        ssrf.check_url(url, allow_private=False)


def test_allow_private_lifts_the_scheme_and_address_rules_but_not_the_shape() -> None:
    assert ssrf.check_url("http://127.0.0.1:9/hook", allow_private=True)
    assert ssrf.check_url("http://localhost:9/hook", allow_private=True)
    for url in ("ftp://127.0.0.1/", "https://u:p@127.0.0.1/", "not a url"):
        with pytest.raises(InvalidInput):
            ssrf.check_url(url, allow_private=True)


def loopback_name() -> str:
    """A host name (not literally ``localhost``, which is refused by name) that resolves to 127.0.0.1 here."""
    candidates = []
    try:
        for line in Path("/etc/hosts").read_text().splitlines():
            fields = line.split("#")[0].split()
            if fields and fields[0].startswith("127."):
                candidates += [n for n in fields[1:] if n.lower() != "localhost" and not n.endswith(".localhost")]
    except OSError:
        pass
    candidates += [socket.gethostname(), "localhost."]
    for name in candidates:
        try:
            found = {info[4][0] for info in socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)}
        except OSError:
            continue
        if found and all(ipaddress.ip_address(a).is_loopback for a in found):
            return name
    pytest.skip("no host name other than 'localhost' resolves to loopback on this machine")


async def test_destination_is_checked_on_what_the_name_resolves_to_now() -> None:
    name = loopback_name()
    assert ssrf.check_url(f"https://{name}/hook", allow_private=False)  # a name: accepted when subscribing
    with pytest.raises(ssrf.Blocked, match=r"127\.0\.0\.1"):
        await ssrf.check_destination(f"https://{name}:8443/hook", allow_private=False)
    with pytest.raises(ssrf.Blocked, match="https"):
        await ssrf.check_destination("http://93.184.216.34/hook", allow_private=False)
    with pytest.raises(ssrf.Blocked, match="resolve"):
        await ssrf.check_destination("https://no-such-host.invalid/hook", allow_private=False)
    await ssrf.check_destination("https://93.184.216.34/hook", allow_private=False)  # numeric: no DNS needed
    await ssrf.check_destination(f"http://{name}/hook", allow_private=True)


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001", "0177.0.0.1"])
def test_shorthand_loopback_literals_are_refused_at_subscription(host: str) -> None:
    with pytest.raises(InvalidInput):
        ssrf.check_url(f"https://{host}/hook", allow_private=False)


@pytest.mark.parametrize("host", ["0", "0x7f.1", "10.1", "0xa9fea9fe", "169.254.43518", "127.0.0.1.", "999.1.1.1"])
def test_other_numeric_spellings_of_non_public_or_invalid_addresses_are_refused(host: str) -> None:
    with pytest.raises(InvalidInput, match=r"not public|valid IP"):
        ssrf.check_url(f"https://{host}/hook", allow_private=False)


async def test_numeric_spellings_are_read_as_the_resolver_reads_them() -> None:
    assert ssrf.check_url("https://8.8.2056/hook", allow_private=False)  # 8.8.8.8
    assert await ssrf.check_destination("https://8.8.2056/hook", allow_private=False) == ("8.8.8.8",)
    assert ssrf.literal_address("0x7f.1") == ipaddress.ip_address("127.0.0.1")
    assert ssrf.literal_address("deadbeef.example") is None
    with pytest.raises(ssrf.Blocked, match="not public"):
        await ssrf.check_destination("https://2130706433/hook", allow_private=False)
    with pytest.raises(ssrf.Blocked, match="valid IP"):
        await ssrf.check_destination("https://1.2.3.4.5/hook", allow_private=False)


@pytest.mark.parametrize(
    "address",
    [
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::",
        "2002:a00:1::",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_ipv6_embedding_loopback_or_metadata_is_blocked(address: str) -> None:
    with pytest.raises(ssrf.Blocked):
        ssrf._check_address(ipaddress.ip_address(address))
    with pytest.raises(InvalidInput):
        ssrf.check_url(f"https://[{address}]/hook", allow_private=False)


def test_6to4_of_a_public_address_passes() -> None:
    ssrf.check_address(ipaddress.ip_address("2002:808:808::1"))  # 6to4 of 8.8.8.8


class Listener:
    """A bare TCP listener on loopback that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    made = Listener()
    yield made
    made.close()


async def test_send_connects_only_to_the_address_that_was_checked(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = loopback_name()
    real = anyio.getaddrinfo

    async def rebinding(host: Any, port: Any, **kwargs: Any) -> Any:
        if host == name:  # the attacker's DNS: public for the check, loopback for the connection
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]
        return await real(host, port, **kwargs)

    monkeypatch.setattr(anyio, "getaddrinfo", rebinding)  # the module ssrf resolves through
    item = Claimed(
        delivery_id=1,
        attempt_no=1,
        webhook_id=1,
        url=f"https://{name}:{listener.port}/hook",
        secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        event_id="evt_rebind",
        event_type="webhook.test",
        body=b"{}",
    )
    settings = Settings(webhook_allow_private=False, webhook_timeout_seconds=1.0)
    async with httpx.AsyncClient(trust_env=False) as http:
        outcome = await send(http, item, settings=settings)
    assert listener.accepted == 0, f"a loopback socket was reached: {outcome}"


# -- a real server with the defaults (allow_private false) ---------------------------------------------------
@pytest.fixture(scope="module")
def strict(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, LiveServer]]:
    with stack(database_url, tmp_path_factory.mktemp("ssrf")) as made:
        yield made, made.serve({"MODELKEEP_WEBHOOK_ALLOW_PRIVATE": "false"})


REFUSED = [
    "http://93.184.216.34/hook",
    "https://127.0.0.1/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://[::ffff:169.254.169.254]/",
    "https://10.1.2.3/hook",
    "https://192.168.1.10/hook",
    "https://172.20.0.5/hook",
    "https://0.0.0.0/hook",
    "https://[fe80::1]/hook",
    "https://localhost/hook",
    "https://metadata.google.internal/computeMetadata/v1/",
]


def test_server_refuses_private_subscriptions(strict: tuple[Stack, LiveServer]) -> None:
    made, server = strict
    with client(server, made.tokens.maintainer) as api:
        for url in REFUSED:
            response = api.post("/api/v1/webhooks", json={"url": url, "events": ["*"]})
            assert response.status_code == 400, (url, response.text)
            problem = response.json()
            assert problem["code"] and problem.get("field") == "url", problem
        listed = [h["url"] for h in api.get("/api/v1/webhooks").json()]
        assert not set(listed) & set(REFUSED)
        ok = api.post(
            "/api/v1/webhooks",
            json={"url": "https://93.184.216.34/hook", "events": ["gate_policy.set"], "model": unique("never")},
        )
        assert ok.status_code == 201, ok.text
        assert api.delete(f"/api/v1/webhooks/{ok.json()['id']}").status_code == 200


def test_name_resolving_to_loopback_is_blocked_at_send_time(
    strict: tuple[Stack, LiveServer], listener: Listener
) -> None:
    made, server = strict
    name, model = loopback_name(), unique("ssrf")
    with client(server, made.tokens.maintainer) as api:
        hook = api.post(
            "/api/v1/webhooks",
            json={"url": f"https://{name}:{listener.port}/hook", "events": ["model.created"], "model": model},
        )
        assert hook.status_code == 201, hook.text
        assert api.post("/api/v1/models", json={"name": model}).status_code == 201

        def failed() -> list[dict[str, Any]]:
            return [d for d in deliveries(api, webhook_id=hook.json()["id"]) if d["status"] == "failed"]

        [delivery] = wait_until(failed, timeout=20, what="the blocked delivery to fail")
    assert delivery["attempts"] == 3 and len(delivery["history"]) == 3
    for attempt in delivery["history"]:
        assert attempt["status_code"] is None
        assert attempt["error"].startswith("blocked:") and "127.0.0.1" in attempt["error"], attempt
    assert listener.accepted == 0
