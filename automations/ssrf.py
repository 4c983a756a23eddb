"""Where webhooks may be sent. By default only ``https`` to public addresses: loopback, private,
link-local (cloud metadata lives there), multicast, reserved and unspecified addresses are refused, checked
on the addresses the host resolves to *at send time* (a DNS answer can change after subscription), and
redirects are never followed. ``allow_private`` (local use, tests) lifts both rules.

The sender connects to an address this module checked, never to the name again: a second resolution could
answer differently (DNS rebinding). IPv6 addresses that carry an IPv4 address (IPv4-mapped, 6to4, Teredo)
are judged on the IPv4 address too, and numeric host spellings that the C resolver accepts (``127.1``,
``2130706433``, ``0x7f.1``, ``0177.0.0.1``) are read the way the resolver reads them.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import anyio

from registry.errors import InvalidInput

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# A host made only of decimal, octal or 0x-hex parts is no DNS name (no top-level domain is numeric);
# inet_aton(3) reads up to four of them as an IPv4 address, and anything else it refuses is refused here.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$")


class Blocked(Exception):
    """The destination is not allowed; the message says why (it is recorded on the attempt)."""


def literal_address(host: str) -> Address | None:
    """The address a host names literally (None for a DNS name).

    Raises ValueError for a numeric-looking host that is no address (``999.1.1.1``): resolvers disagree on
    what to do with it, so it is not accepted as a name either."""
    host = host.lower()
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not _NUMERIC_HOST.match(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
    except OSError:
        raise ValueError(f"{host!r} is neither a host name nor a valid IP address") from None


def check_url(url: str, *, allow_private: bool) -> str:
    """Validate a subscription URL's shape (InvalidInput); the address check happens per send."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput(f"webhook URL {url!r} must be an absolute http(s) URL", field="url")
    if parts.scheme != "https" and not allow_private:
        raise InvalidInput(
            "webhook URLs must use https (MODELKEEP_WEBHOOK_ALLOW_PRIVATE allows http for local use)", field="url"
        )
    if parts.username or parts.password:
        raise InvalidInput("webhook URLs must not carry credentials; the signature authenticates requests", field="url")
    try:
        parts.port  # noqa: B018  (raises ValueError for a port out of range or not a number)
    except ValueError:
        raise InvalidInput(f"webhook URL {url!r} has an invalid port", field="url") from None
    if not allow_private:
        host = parts.hostname.lower()
        if host in METADATA_HOSTS or host == "localhost" or host.endswith(".localhost"):
            raise InvalidInput(f"webhook host {host!r} is not allowed", field="url")
        try:
            address = literal_address(host)
            if address is not None:
                check_address(address)
        except ValueError as exc:
            raise InvalidInput(f"webhook URL {url!r}: {exc}", field="url") from None
        except Blocked as exc:
            raise InvalidInput(str(exc), field="url") from None
    return url


def _embedded(address: Address) -> Iterator[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address leads to besides IPv4-mapped ones: 6to4 (2002::/16) and Teredo
    (server and client)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.sixtofour is not None:
            yield address.sixtofour
        if address.teredo is not None:
            yield from address.teredo


def _public(address: Address) -> bool:
    return not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def check_address(address: Address) -> None:
    """Raise Blocked unless ``address`` (and any IPv4 address it embeds) is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:0:0/96 itself is "reserved": judge what it maps to
    if not _public(address):
        raise Blocked(f"destination address {address} is not public (loopback, private, link-local or reserved)")
    for embedded in _embedded(address):
        if not _public(embedded):
            raise Blocked(
                f"destination address {address} embeds {embedded}, which is not public "
                "(loopback, private, link-local or reserved)"
            )


_check_address = check_address  # the name the unit tests use


async def check_destination(url: str, *, allow_private: bool) -> tuple[str, ...]:
    """Resolve ``url``'s host now and raise Blocked unless every address it resolves to may be contacted.

    Returns the checked addresses, in the resolver's order of preference: the sender must connect to one of
    them (not to the name). Empty when ``allow_private`` is set: then nothing is checked and the sender
    connects by name."""
    if allow_private:
        return ()
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise Blocked("only https destinations are allowed")
    host = (parts.hostname or "").lower()
    if host in METADATA_HOSTS or host == "localhost" or host.endswith(".localhost"):
        raise Blocked(f"host {host!r} is not allowed")
    try:
        port = parts.port or 443
        literal = literal_address(host)
    except ValueError as exc:
        raise Blocked(str(exc)) from None
    if literal is not None:
        check_address(literal)
        return (str(literal),)
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Blocked(f"cannot resolve {host!r}: {exc}") from None
    found: list[str] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        check_address(address)
        if str(address) not in found:
            found.append(str(address))
    if not found:
        raise Blocked(f"cannot resolve {host!r}: no addresses")
    return tuple(found)
