"""`registry webhooks` and `registry automations` against a real server with a real receiver."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from registry.cli import main
from tests.conftest import LiveServer, Tokens, unique


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.requests) >= count, f"received {len(self.requests)} of {count}"


def run(server: LiveServer, token: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args, "--url", server.url, "--token", token])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_webhook_commands(live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str]) -> None:
    receiver = Receiver()
    try:
        model = unique("hooked")
        code, out, _ = run(
            live_server,
            api_tokens.maintainer,
            capsys,
            "webhooks",
            "add",
            receiver.url,
            "--events",
            "webhook.test,model.created",
            "--model",
            model,
            "--json",
        )
        hook = json.loads(out)
        assert code == 0 and hook["secret"].startswith("whsec_")
        code, out, _ = run(live_server, api_tokens.reader, capsys, "webhooks", "list", "--json")
        assert any(h["id"] == hook["id"] and not h.get("secret") for h in json.loads(out))
        assert run(live_server, api_tokens.maintainer, capsys, "webhooks", "test", str(hook["id"]))[0] == 0
        receiver.wait_for(1)
        headers, body = receiver.requests[0]
        Verifier(hook["secret"]).verify(body, headers)
        assert json.loads(body)["type"] == "webhook.test"

        code, out, _ = run(
            live_server, api_tokens.reader, capsys, "webhooks", "deliveries", "--webhook", str(hook["id"]), "--json"
        )
        rows = json.loads(out)
        assert rows and rows[0]["status"] in ("succeeded", "delivering")
        code, out, _ = run(
            live_server, api_tokens.maintainer, capsys, "webhooks", "rotate-secret", str(hook["id"]), "--json"
        )
        assert json.loads(out)["secret"] != hook["secret"]
        assert (
            run(
                live_server,
                api_tokens.maintainer,
                capsys,
                "webhooks",
                "disable",
                str(hook["id"]),
                "--reason",
                "maintenance",
            )[0]
            == 0
        )
        code, out, _ = run(live_server, api_tokens.reader, capsys, "webhooks", "list", "--json")
        mine = next(h for h in json.loads(out) if h["id"] == hook["id"])
        assert mine["enabled"] is False and mine["disabled_reason"] == "maintenance"
        assert run(live_server, api_tokens.maintainer, capsys, "webhooks", "enable", str(hook["id"]))[0] == 0
        code, _, err = run(
            live_server, api_tokens.writer, capsys, "webhooks", "add", receiver.url, "--events", "alias.moved"
        )
        assert code == 1 and "maintainer" in err
        code, _, err = run(
            live_server, api_tokens.maintainer, capsys, "webhooks", "add", receiver.url, "--events", "alias.teleported"
        )
        assert code == 2 and "unknown event type" in err
        assert run(live_server, api_tokens.maintainer, capsys, "webhooks", "remove", str(hook["id"]))[0] == 0
        assert run(live_server, api_tokens.maintainer, capsys, "webhooks", "test", str(hook["id"]))[0] == 4
    finally:
        receiver.server.shutdown()


def test_automation_commands(
    live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rule = unique("rule")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"rules:\n  - name: {rule}\n    on: gate.completed\n    model: {unique('m')}\n"
        "    if: {verdict: pass}\n    action: promote\n    alias: staging\n"
    )
    assert run(live_server, api_tokens.maintainer, capsys, "automations", "apply", str(rules))[0] == 0
    code, out, _ = run(live_server, api_tokens.reader, capsys, "automations", "list", "--json")
    listed = next(r for r in json.loads(out) if r["name"] == rule)
    assert listed["action"] == "promote" and listed["conditions"] == {"verdict": "pass"}
    assert listed["role"] == "maintainer"
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    on: model_version.created\n    action: launch_rocket\n")
    code, _, err = run(live_server, api_tokens.maintainer, capsys, "automations", "apply", str(bad))
    assert code == 2 and "launch_rocket" in err
    assert run(live_server, api_tokens.writer, capsys, "automations", "apply", str(rules))[0] == 1
    assert run(live_server, api_tokens.maintainer, capsys, "automations", "remove", rule)[0] == 0
    assert run(live_server, api_tokens.maintainer, capsys, "automations", "remove", rule)[0] == 4

    trigger = unique("ci")
    code, out, _ = run(live_server, api_tokens.maintainer, capsys, "automations", "triggers", "add", trigger, "--json")
    assert code == 0 and json.loads(out)["secret"].startswith("whsec_")
    code, out, _ = run(live_server, api_tokens.reader, capsys, "automations", "triggers", "list", "--json")
    assert any(t["name"] == trigger and "secret" not in t for t in json.loads(out))
    assert run(live_server, api_tokens.maintainer, capsys, "automations", "triggers", "remove", trigger)[0] == 0
