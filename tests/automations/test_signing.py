"""automations.signing against the Standard Webhooks spec vector and the ``standardwebhooks`` reference library."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from automations import signing
from automations.delivery import body_of
from registry.domain.events import Event

VECTOR_KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_spec_test_vector() -> None:
    assert signing.sign(VECTOR_KEY, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    headers = signing.headers([VECTOR_KEY], VECTOR_ID, VECTOR_BODY, timestamp=VECTOR_TS)
    assert headers == {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS), "webhook-signature": VECTOR_SIG}
    assert signing.verify([VECTOR_KEY], headers, VECTOR_BODY, now=VECTOR_TS + 10) == VECTOR_ID
    # The reference library computes the same signature for the same input.
    theirs = Webhook(VECTOR_KEY).sign(VECTOR_ID, datetime.fromtimestamp(VECTOR_TS, UTC), VECTOR_BODY.decode())
    assert theirs == VECTOR_SIG


def test_reference_library_accepts_our_headers_and_we_accept_theirs() -> None:
    secret = signing.new_secret()
    body = json.dumps({"type": "alias.moved", "data": {"model": "churn", "emoji": "🚀"}}).encode()
    headers = signing.headers([secret], "evt_0123", body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    now = int(time.time())
    their_sig = Webhook(secret).sign("evt_0123", datetime.fromtimestamp(now, UTC), body.decode())
    theirs = {"webhook-id": "evt_0123", "webhook-timestamp": str(now), "webhook-signature": their_sig}
    assert signing.verify([secret], theirs, body) == "evt_0123"


def test_new_secrets_are_whsec_with_32_random_bytes() -> None:
    made = {signing.new_secret() for _ in range(50)}
    assert len(made) == 50
    for secret in made:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_rotation_header_carries_both_signatures_and_each_secret_alone_verifies() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    body = b'{"id":"evt_1"}'
    headers = signing.headers([new, old], "evt_1", body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)  # raises if no signature matches this secret alone
        assert signing.verify([secret], headers, body) == "evt_1"
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)


@pytest.mark.parametrize(
    "change",
    ["body", "id", "timestamp_old", "timestamp_future", "secret", "scheme", "missing"],
)
def test_verify_rejects(change: str) -> None:
    secret = signing.new_secret()
    body = b'{"a":1}'
    now = 1_700_000_000
    headers = signing.headers([secret], "evt_x", body, timestamp=now)
    check_at = now
    if change == "body":
        body = b'{"a":2}'
    elif change == "id":
        headers["webhook-id"] = "evt_y"
    elif change == "timestamp_old":
        check_at = now + signing.TOLERANCE_SECONDS + 1
    elif change == "timestamp_future":
        check_at = now - signing.TOLERANCE_SECONDS - 1
    elif change == "secret":
        secret = signing.new_secret()
    elif change == "scheme":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v1a,")
    elif change == "missing":
        del headers["webhook-signature"]
    assert signing.verify([secret], headers, body, now=check_at) is None


def test_body_is_deterministic_and_carries_type_timestamp_id_data_sequence() -> None:
    event = Event(
        seq=42,
        id="evt_abc",
        type="alias.moved",
        model="churn",
        subject="models/churn/aliases/staging",
        actor="alice",
        data={"model": "churn", "alias": "staging", "from_version": 1, "to_version": 2},
        created_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    )
    body = body_of(event)
    assert body == body_of(event)  # every retry sends (and signs) the same bytes
    payload = json.loads(body)
    assert payload == {
        "type": "alias.moved",
        "timestamp": "2026-01-02T03:04:05.678000Z",
        "id": "evt_abc",
        "data": {"model": "churn", "alias": "staging", "from_version": 1, "to_version": 2, "sequence": 42},
    }
    assert "." not in payload["id"]  # the spec forbids '.' in the id (it delimits the signed content)
