"""Standard Webhooks signatures (https://www.standardwebhooks.com): ``v1,<base64 HMAC-SHA256>`` over
``"{id}.{timestamp}.{body}"`` with a ``whsec_<base64 key>`` secret. Stdlib only; the tests cross-check it
against the ``standardwebhooks`` reference library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300
_TIMESTAMP = re.compile(r"[0-9]{1,18}")
"""Whole seconds in ASCII digits. ``int()`` alone would also take signs, spaces, underscores, other scripts'
digits and numbers far too large to compare with the clock (OverflowError); no valid timestamp needs them."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_header(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Space-separated signatures, one per secret (two during a rotation's overlap window)."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def headers(secrets_: Iterable[str], msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header(secrets_, msg_id, ts, body),
    }


def verify(
    secrets_: Iterable[str],
    headers_: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> str | None:
    """Return the message id when one signature matches one secret within the time tolerance, else None."""
    h = {k.lower(): v for k, v in headers_.items()}
    msg_id, ts_text, given = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not msg_id or not ts_text or not given:
        return None
    if not _TIMESTAMP.fullmatch(ts_text):
        return None
    ts = int(ts_text)
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return None
    wanted = [sign(s, msg_id, ts, body).partition(",")[2] for s in secrets_]
    for part in given.split():
        version, _, sig = part.partition(",")
        if version == "v1" and any(hmac.compare_digest(sig, w) for w in wanted):
            return msg_id
    return None
