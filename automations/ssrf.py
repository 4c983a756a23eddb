"""Where webhooks may be sent. By default only ``https`` to public addresses: loopback, private,
link-local (cloud metadata lives there), multicast, reserved and unspecified addresses are refused, checked
on the addresses the host resolves to *at send time* (a DNS answer can change after subscription), and
redirects are never followed.

An ``AllowList`` (``MODELKEEP_WEBHOOK_ALLOW_HOSTS``) opens exactly what it names: a host name named there may
use ``http`` and resolve to any address, and an address inside a named network (``10.0.0.0/8``) may be reached
even though it is not public. Cloud metadata addresses (``169.254.169.254``, ``fd00:ec2::254`` ...) stay refused
unless an entry names that very address: a range around them, or a name resolving to them, is not enough.

The sender connects to an address this module checked, never to the name again: a second resolution could
answer differently (DNS rebinding). IPv6 addresses that carry an IPv4 address (IPv4-mapped, 6to4, Teredo)
are judged on the IPv4 address too, and numeric host spellings that the C resolver accepts (``127.1``,
``2130706433``, ``0x7f.1``, ``0177.0.0.1``) are read the way the resolver reads them.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import anyio

from registry.errors import InvalidInput

SETTING = "MODELKEEP_WEBHOOK_ALLOW_HOSTS"
METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
METADATA_ADDRESSES: frozenset[Address] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle ... instance metadata
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
"""Addresses that hand out cloud credentials: reachable only when an allow-list entry names the address."""
# A host made only of decimal, octal or 0x-hex parts is no DNS name (no top-level domain is numeric);
# inet_aton(3) reads up to four of them as an IPv4 address, and anything else it refuses is refused here.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$")
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)


class Blocked(Exception):
    """The destination is not allowed; the message says why (it is recorded on the attempt)."""


@dataclass(frozen=True, slots=True)
class AllowList:
    """What ``MODELKEEP_WEBHOOK_ALLOW_HOSTS`` opens beyond public https: host names, addresses and networks."""

    names: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Raises ValueError naming an entry that is neither a host name nor an address or CIDR range."""
        names: set[str] = set()
        networks: list[Network] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = entry.rstrip(".")
            if not _HOST_NAME.match(name) or _NUMERIC_HOST.match(name):
                raise ValueError(
                    f"{raw.strip()!r} is neither a host name nor an IP address or CIDR range "
                    "(no scheme, port or path: e.g. 127.0.0.1,localhost,10.0.0.0/8)"
                )
            names.add(name)
        return cls(frozenset(names), tuple(networks))

    def names_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.names

    def covers(self, address: Address) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)

    def names_address(self, address: Address) -> bool:
        """An entry is this very address (``169.254.169.254`` or ``169.254.169.254/32``), not a range around it."""
        return any(net.num_addresses == 1 and address in net for net in self.networks if net.version == address.version)


NOTHING = AllowList()


@functools.lru_cache(maxsize=8)
def _cached(entries: tuple[str, ...]) -> AllowList:
    return AllowList.parse(entries)


def allow_list(entries: Iterable[str]) -> AllowList:
    """The parsed allow-list of a setting's entries (parsed once per distinct list)."""
    return _cached(tuple(entries))


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


def _unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:0:0/96 itself is "reserved": judge what it maps to
    return address


def _split(url: str) -> tuple[SplitResult, str, int | None]:
    """The URL's parts, its host (lower case) and port; ValueError for what no client could connect to
    (``https://[::1/``, a port out of range)."""
    parts = urlsplit(url)
    return parts, (parts.hostname or "").lower(), parts.port


def _refused_name(host: str) -> bool:
    return (
        host.rstrip(".") in METADATA_HOSTS or host.rstrip(".") == "localhost" or host.rstrip(".").endswith(".localhost")
    )


def check_url(url: str, *, allow: AllowList = NOTHING) -> str:
    """Validate a subscription URL (InvalidInput): its shape, and the host when it names an address. A name
    is resolved and checked again before every attempt (``check_destination``)."""
    try:
        parts, host, _port = _split(url)
    except ValueError:
        raise InvalidInput(f"webhook URL {url!r} is not a valid URL (host or port malformed)", field="url") from None
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidInput(f"webhook URL {url!r} must be an absolute http(s) URL", field="url")
    if parts.username or parts.password:
        raise InvalidInput("webhook URLs must not carry credentials; the signature authenticates requests", field="url")
    try:
        literal = literal_address(host)
    except ValueError as exc:
        raise InvalidInput(f"webhook URL {url!r}: {exc}", field="url") from None
    named = allow.names_host(host)
    opened = named or (literal is not None and allow.covers(_unmapped(literal)))
    if parts.scheme != "https" and not opened:
        raise InvalidInput(f"webhook URLs must use https ({SETTING} allows http to the hosts it names)", field="url")
    if not named and _refused_name(host):
        raise InvalidInput(f"webhook host {host!r} is not allowed", field="url")
    if literal is not None:
        try:
            check_address(literal, allow)
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


def check_address(address: Address, allow: AllowList = NOTHING, *, trusted: bool = False) -> None:
    """Raise Blocked unless ``address`` may be contacted: it is public (and so is any IPv4 address it embeds),
    or ``allow`` covers it, or ``trusted`` (its host name is on the allow-list). A cloud metadata address, also
    when embedded, needs an allow-list entry naming it whatever else holds."""
    address = _unmapped(address)
    for candidate in (address, *_embedded(address)):
        if candidate in METADATA_ADDRESSES and not allow.names_address(candidate):
            raise Blocked(
                f"destination address {candidate} is not public: a cloud metadata address (only an entry naming "
                f"this very address in {SETTING} allows it)"
            )
    if trusted or allow.covers(address):
        return
    if not _public(address):
        raise Blocked(f"destination address {address} is not public (loopback, private, link-local or reserved)")
    for embedded in _embedded(address):
        if not _public(embedded) and not allow.covers(embedded):
            raise Blocked(
                f"destination address {address} embeds {embedded}, which is not public "
                "(loopback, private, link-local or reserved)"
            )


_check_address = check_address  # the name the unit tests use


async def check_destination(url: str, *, allow: AllowList = NOTHING) -> tuple[str, ...]:
    """Resolve ``url``'s host now and raise Blocked unless every address it resolves to may be contacted.

    Returns the checked addresses, in the resolver's order of preference: the sender must connect to one of
    them (not to the name), also for hosts the allow-list opens."""
    try:
        parts, host, port = _split(url)
        literal = literal_address(host)
    except ValueError as exc:
        raise Blocked(str(exc)) from None
    named = allow.names_host(host)
    if parts.scheme != "https" and not (named or (literal is not None and allow.covers(_unmapped(literal)))):
        raise Blocked(f"only https destinations are allowed (and http to hosts {SETTING} names)")
    if not named and _refused_name(host):
        raise Blocked(f"host {host!r} is not allowed")
    if literal is not None:
        check_address(literal, allow, trusted=named)
        return (str(literal),)
    try:
        infos = await anyio.getaddrinfo(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Blocked(f"cannot resolve {host!r}: {exc}") from None
    found: list[str] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        check_address(address, allow, trusted=named)
        if str(address) not in found:
            found.append(str(address))
    if not found:
        raise Blocked(f"cannot resolve {host!r}: no addresses")
    return tuple(found)
