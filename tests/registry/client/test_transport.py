"""The SDK's transport reads bodies in large pieces (downloads are bound by per-read cost otherwise)."""

from __future__ import annotations

from httpcore._sync.http11 import HTTP11Connection

from registry.client._http import BULK_READ_BYTES, HttpClient


def test_a_client_reads_a_mebibyte_per_socket_read() -> None:
    with HttpClient("http://127.0.0.1:9", token="t"):
        assert HTTP11Connection.READ_NUM_BYTES >= BULK_READ_BYTES == 1024 * 1024
