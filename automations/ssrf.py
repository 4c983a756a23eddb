"""Where webhooks may be sent. By default only ``https`` to public addresses: loopback, private,
link-local (cloud metadata lives there), multicast, reserved and unspecified addresses are refused, checked
on the addresses the host resolves to *at send time* (a DNS answer can change after subscription), and
redirects are never followed. ``allow_private`` (local use, tests) lifts both rules.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import anyio

from registry.errors import InvalidInput

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


class Blocked(Exception):
    """The destination is not allowed; the message says why (it is recorded on the attempt)."""


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
    if not allow_private:
        host = parts.hostname.lower()
        if host in METADATA_HOSTS or host == "localhost" or host.endswith(".localhost"):
            raise InvalidInput(f"webhook host {host!r} is not allowed", field="url")
        try:
            _check_address(ipaddress.ip_address(host))
        except ValueError:
            pass  # a name: resolved and checked at send time
        except Blocked as exc:
            raise InvalidInput(str(exc), field="url") from None
    return url


def _check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    ):
        raise Blocked(f"destination address {address} is not public (loopback, private, link-local or reserved)")


async def check_destination(url: str, *, allow_private: bool) -> None:
    """Raise Blocked unless ``url`` may be contacted now (resolving its host)."""
    if allow_private:
        return
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise Blocked("only https destinations are allowed")
    host = parts.hostname or ""
    if host.lower() in METADATA_HOSTS or host.lower() == "localhost":
        raise Blocked(f"host {host!r} is not allowed")
    port = parts.port or 443
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Blocked(f"cannot resolve {host!r}: {exc}") from None
    for info in infos:
        _check_address(ipaddress.ip_address(info[4][0]))
