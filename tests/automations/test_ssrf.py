"""SSRF defences: by default webhooks only go to https on public addresses, checked at subscription and again
on the addresses the host resolves to when sending; MODELKEEP_WEBHOOK_ALLOW_HOSTS opens what it names and
nothing more (cloud metadata addresses only when named one by one). Unit tests of automations.ssrf, then
real servers."""

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
        ssrf.check_url(f"https://{literal}/hook")
    opened = ssrf.AllowList.parse([str(ipaddress.ip_address(address)), "::/0", "0.0.0.0/0"])
    if ssrf._unmapped(ipaddress.ip_address(address)) not in ssrf.METADATA_ADDRESSES:
        assert ssrf.check_url(f"http://{literal}:8080/hook", allow=opened)


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_pass(address: str) -> None:
    ssrf._check_address(ipaddress.ip_address(address))
    literal = f"[{address}]" if ":" in address else address
    assert ssrf.check_url(f"https://{literal}/hook")


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
        ssrf.check_url(url)


LOCAL = ssrf.AllowList.parse(["127.0.0.1", "localhost", "10.0.0.0/8"])


def test_allow_list_lifts_the_scheme_and_address_rules_for_what_it_names_but_not_the_shape() -> None:
    assert ssrf.check_url("http://127.0.0.1:9/hook", allow=LOCAL)
    assert ssrf.check_url("http://localhost:9/hook", allow=LOCAL)
    assert ssrf.check_url("http://LOCALHOST./hook", allow=LOCAL)
    assert ssrf.check_url("http://10.20.30.40:8080/hook", allow=LOCAL)
    assert ssrf.check_url("https://[::ffff:10.0.0.1]/hook", allow=LOCAL)
    for url in ("ftp://127.0.0.1/", "https://u:p@127.0.0.1/", "not a url", "https://[::1/", "http://[::1]x/"):
        with pytest.raises(InvalidInput):
            ssrf.check_url(url, allow=LOCAL)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # a public name not on the list: still https only
        "https://127.0.0.2/hook",  # 127.0.0.1 was named, not 127/8
        "https://[::1]/hook",
        "https://192.168.1.10/hook",
        "https://172.16.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://api.localhost/hook",
        "https://metadata.google.internal/computeMetadata/v1/",
    ],
)
def test_allow_list_opens_nothing_it_does_not_name(url: str) -> None:
    with pytest.raises(InvalidInput):
        ssrf.check_url(url, allow=LOCAL)


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "::ffff:169.254.169.254"]
)
def test_metadata_addresses_need_an_entry_naming_them(address: str) -> None:
    parsed = ipaddress.ip_address(address)
    ranges = ssrf.AllowList.parse(["0.0.0.0/0", "::/0", "169.254.0.0/16", "fd00::/8", "100.64.0.0/10", "metadata"])
    literal = f"[{address}]" if ":" in address else address
    for allow in (ssrf.NOTHING, ranges):
        with pytest.raises(ssrf.Blocked, match="metadata"):
            ssrf.check_address(parsed, allow)
        with pytest.raises(ssrf.Blocked, match="metadata"):
            ssrf.check_address(parsed, allow, trusted=True)  # a named host resolving to it
        with pytest.raises(InvalidInput):
            ssrf.check_url(f"https://{literal}/", allow=allow)
    target = parsed.ipv4_mapped if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped else parsed
    named = ssrf.AllowList.parse([str(target)])
    ssrf.check_address(parsed, named)
    assert ssrf.check_url(f"http://{literal}/", allow=named)
    assert ssrf.check_url("http://metadata/", allow=ranges)  # the name is named; its address is checked per send


def test_6to4_wrapping_a_metadata_address_is_refused_even_when_its_range_is_open() -> None:
    wrapped = ipaddress.ip_address("2002:a9fe:a9fe::1")  # 6to4 of 169.254.169.254
    with pytest.raises(ssrf.Blocked, match="metadata"):
        ssrf.check_address(wrapped, ssrf.AllowList.parse(["2002::/16", "169.254.0.0/16"]))


@pytest.mark.parametrize("entry", ["localhost:8080", "http://localhost", "*", "127.1", "10.0.0.0/33", "a b", "x/y"])
def test_allow_list_entries_that_name_nothing_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a host name nor an IP address"):
        ssrf.AllowList.parse([entry])
    with pytest.raises(ValueError):
        Settings(webhook_allow_hosts=[entry])


def test_settings_read_the_allow_list_and_refuse_the_removed_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELKEEP_WEBHOOK_ALLOW_HOSTS", "127.0.0.1, LocalHost,10.0.0.0/8")
    assert Settings().webhook_allow_hosts == ["127.0.0.1", "localhost", "10.0.0.0/8"]
    for value in ("true", "false", "1"):
        monkeypatch.setenv("MODELKEEP_WEBHOOK_ALLOW_PRIVATE", value)
        with pytest.raises(ValueError, match="MODELKEEP_WEBHOOK_ALLOW_HOSTS"):
            Settings()


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
    assert ssrf.check_url(f"https://{name}/hook")  # a name: accepted when subscribing
    with pytest.raises(ssrf.Blocked, match=r"127\.0\.0\.1"):
        await ssrf.check_destination(f"https://{name}:8443/hook")
    with pytest.raises(ssrf.Blocked, match="https"):
        await ssrf.check_destination("http://93.184.216.34/hook")
    with pytest.raises(ssrf.Blocked, match="resolve"):
        await ssrf.check_destination("https://no-such-host.invalid/hook")
    await ssrf.check_destination("https://93.184.216.34/hook")  # numeric: no DNS needed
    # Named, the host may use http and reach loopback; the sender still gets the checked addresses.
    found = await ssrf.check_destination(f"http://{name}/hook", allow=ssrf.AllowList.parse([name]))
    assert found and all(ipaddress.ip_address(a).is_loopback for a in found)
    # Its addresses' range opens https to it, not http; another range opens nothing.
    assert await ssrf.check_destination(f"https://{name}/hook", allow=ssrf.AllowList.parse(["127.0.0.0/8", "::1"]))
    with pytest.raises(ssrf.Blocked, match="https"):
        await ssrf.check_destination(f"http://{name}/hook", allow=ssrf.AllowList.parse(["127.0.0.0/8", "::1"]))
    with pytest.raises(ssrf.Blocked, match=r"127\.0\.0\.1"):
        await ssrf.check_destination(f"https://{name}/hook", allow=ssrf.AllowList.parse(["10.0.0.0/8", "other.test"]))


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001", "0177.0.0.1"])
def test_shorthand_loopback_literals_are_refused_at_subscription(host: str) -> None:
    with pytest.raises(InvalidInput):
        ssrf.check_url(f"https://{host}/hook")


@pytest.mark.parametrize("host", ["0", "0x7f.1", "10.1", "0xa9fea9fe", "169.254.43518", "127.0.0.1.", "999.1.1.1"])
def test_other_numeric_spellings_of_non_public_or_invalid_addresses_are_refused(host: str) -> None:
    with pytest.raises(InvalidInput, match=r"not public|valid IP"):
        ssrf.check_url(f"https://{host}/hook")


async def test_numeric_spellings_are_read_as_the_resolver_reads_them() -> None:
    assert ssrf.check_url("https://8.8.2056/hook")  # 8.8.8.8
    assert await ssrf.check_destination("https://8.8.2056/hook") == ("8.8.8.8",)
    assert ssrf.literal_address("0x7f.1") == ipaddress.ip_address("127.0.0.1")
    assert ssrf.literal_address("deadbeef.example") is None
    with pytest.raises(ssrf.Blocked, match="not public"):
        await ssrf.check_destination("https://2130706433/hook")
    with pytest.raises(ssrf.Blocked, match="valid IP"):
        await ssrf.check_destination("https://1.2.3.4.5/hook")


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
        ssrf.check_url(f"https://[{address}]/hook")


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
    settings = Settings(webhook_timeout_seconds=1.0)
    async with httpx.AsyncClient(trust_env=False) as http:
        outcome = await send(http, item, settings=settings)
    assert listener.accepted == 0, f"a loopback socket was reached: {outcome}"


# -- a real server with the defaults (an empty allow-list) --------------------------------------------------
@pytest.fixture(scope="module")
def strict(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, LiveServer]]:
    with stack(database_url, tmp_path_factory.mktemp("ssrf")) as made:
        yield made, made.serve({"MODELKEEP_WEBHOOK_ALLOW_HOSTS": ""})


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


# -- a real server with an allow-list, and one with the removed switch -----------------------------------------
def test_server_with_an_allow_list_opens_only_what_it_names(strict: tuple[Stack, LiveServer]) -> None:
    made, _ = strict
    server = made.serve({"MODELKEEP_WEBHOOK_ALLOW_HOSTS": "127.0.0.1,localhost,10.0.0.0/8"})
    try:
        with client(server, made.tokens.maintainer) as api:
            for url in [
                "https://169.254.169.254/latest/meta-data/",
                "https://[fd00:ec2::254]/",
                "https://192.168.1.10/hook",
                "https://127.0.0.2/hook",
                "http://93.184.216.34/hook",
                "https://metadata.google.internal/computeMetadata/v1/",
            ]:
                response = api.post("/api/v1/webhooks", json={"url": url, "events": ["*"]})
                assert response.status_code == 400, (url, response.text)
            for url in ["http://127.0.0.1:9/hook", "http://localhost:9/hook", "https://10.1.2.3/hook"]:
                response = api.post(
                    "/api/v1/webhooks", json={"url": url, "events": ["gate_policy.set"], "model": unique("never")}
                )
                assert response.status_code == 201, (url, response.text)
                assert api.delete(f"/api/v1/webhooks/{response.json()['id']}").status_code == 200
    finally:
        made.stop(server)


def test_server_refuses_to_start_with_the_removed_switch(strict: tuple[Stack, LiveServer]) -> None:
    made, _ = strict
    with pytest.raises(RuntimeError, match="MODELKEEP_WEBHOOK_ALLOW_HOSTS") as failed:
        made.serve({"MODELKEEP_WEBHOOK_ALLOW_PRIVATE": "true"})
    assert "Traceback" not in str(failed.value)
