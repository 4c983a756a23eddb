"""The Docker Compose deployment (deploy/compose.yaml, deploy/haproxy.cfg, deploy/seaweedfs-entrypoint.sh).

No Docker daemon is needed: the compose file is read as Compose reads it (YAML, then ``${...}`` interpolation
from deploy/.env, filled here from deploy/.env.example), and checked for the properties the deployment relies
on. HAProxy runs for real with the same configuration, its backends moved to loopback stubs, and SeaweedFS runs
for real through the same entrypoint script the ``s3`` service uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

from registry.db import Database
from registry.settings import Settings
from tests.fixtures.seaweed import free_ports, stop, weed_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
HAPROXY_CFG = DEPLOY / "haproxy.cfg"
SEAWEED_ENTRYPOINT = DEPLOY / "seaweedfs-entrypoint.sh"

SECRETS = ("POSTGRES_PASSWORD", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")
"""Required in deploy/.env; empty in the example and without a default anywhere."""
LONG_RUNNING = ("postgres", "s3", "registry", "lb")
REGISTRY_PORT = 5000
DEFAULT_MAX_UPLOAD = 1024**4


# --- Compose, as Compose reads it -----------------------------------------------------------------------------

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``,
    ``${VAR:+alt}``, ``${VAR+alt}`` and ``$$``; raises MissingVariable where Compose refuses to start."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"] or "", match["arg"] or ""
        value = env.get(name)
        unset_or_empty = not value if op.startswith(":") else value is None
        if op.endswith("-"):
            return arg if unset_or_empty else (value or "")
        if op.endswith("?"):
            if unset_or_empty:
                raise MissingVariable(f"required variable {name} is missing a value: {arg}")
            return value or ""
        if op.endswith("+"):
            return "" if unset_or_empty else arg
        return value or ""

    return _REFERENCE.sub(one, text)


def interpolate_all(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_all(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_all(value, env) for key, value in node.items()}
    return node


def references(text: str) -> list[re.Match[str]]:
    return [match for match in _REFERENCE.finditer(text) if not match["escaped"]]


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines, as Compose reads an .env file (comments and blank lines skipped)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        assert key.strip() not in env, f"{path.name}: {key} twice"
        env[key.strip()] = value.strip()
    return env


def operator_env() -> dict[str, str]:
    """deploy/.env as an operator writes it: the example with every secret filled in (hex, as it says)."""
    return read_env_file(ENV_EXAMPLE) | {name: secrets.token_hex(24) for name in SECRETS}


def raw_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def compose(env: dict[str, str]) -> dict[str, Any]:
    project = interpolate_all(raw_compose(), env)
    assert isinstance(project, dict)
    return project


def services(env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    found = compose(operator_env() if env is None else env)["services"]
    assert isinstance(found, dict)
    return found


def as_argv(command: Any) -> list[str]:
    assert isinstance(command, list), f"commands are exec-form lists, not shell strings: {command!r}"
    return [str(part) for part in command]


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


# --- The compose file ------------------------------------------------------------------------------------------


def test_secrets_are_required_and_have_no_default() -> None:
    text = COMPOSE.read_text()
    for match in references(text):
        name = match["name"] or match["bare"]
        if name in SECRETS:
            assert match["op"] == ":?", f"{match[0]}: a secret must be ${{{name}:?...}} (no default, never empty)"
            assert "deploy/.env" in (match["arg"] or ""), f"{match[0]}: the error should say where to set it"
    for name in SECRETS:
        assert any(name == m["name"] for m in references(text)), f"{name} is not used"
        env = operator_env()
        for missing in ({k: v for k, v in env.items() if k != name}, env | {name: ""}):
            with pytest.raises(MissingVariable, match=name):
                compose(missing)
    assert all(read_env_file(ENV_EXAMPLE)[name] == "" for name in SECRETS), "the example must not carry secrets"


def test_no_credentials_written_in_deploy() -> None:
    assigned = re.compile(
        r"""(?i)(password|passwd|secret|access_?key|secret_?key|token)["']?\s*[:=]\s*["']?"""
        r"""(?!(?:true|false)\b)([A-Za-z0-9][^\s"',}]*)"""
    )
    in_url = re.compile(r"://[^/@\s:]+:([^/@\s]+)@")
    # deploy/.env is the operator's own copy (never committed); deploy/kubernetes has its own test.
    files = [
        p
        for p in DEPLOY.rglob("*")
        if p.is_file() and p.name != ".env" and "kubernetes" not in p.relative_to(DEPLOY).parts
    ]
    assert COMPOSE in files and HAPROXY_CFG in files
    for path in files:
        text = path.read_text()
        for match in assigned.finditer(text):
            pytest.fail(f"{path.relative_to(ROOT)}: a credential is written here: {match[0]!r}")
        for match in in_url.finditer(text):
            assert match[1].startswith("${"), f"{path.relative_to(ROOT)}: a password in a URL: {match[0]!r}"
    assert not list(DEPLOY.glob("*.json")), "SeaweedFS's identities are generated from deploy/.env at start"


def test_every_variable_is_documented_with_the_default_compose_uses() -> None:
    documented = read_env_file(ENV_EXAMPLE)
    used: dict[str, set[str]] = {}
    for match in references(COMPOSE.read_text()):
        name = match["name"] or match["bare"]
        used.setdefault(name, set())
        if match["op"] in (":-", "-"):
            used[name].add(match["arg"] or "")
    assert set(used) <= set(documented), f"undocumented in .env.example: {sorted(set(used) - set(documented))}"
    assert set(documented) <= set(used), f"documented but unused: {sorted(set(documented) - set(used))}"
    for name, defaults in used.items():
        assert len(defaults) <= 1, f"{name} has different defaults in compose.yaml: {sorted(defaults)}"
        if defaults:
            assert documented[name] == next(iter(defaults)), f"{name}: .env.example and compose.yaml differ"
    # What HAProxy reads from its environment, compose sets on the lb service.
    lb_env = services()["lb"]["environment"]
    for name in re.findall(r'"\$\{([A-Za-z_][A-Za-z0-9_]*)', HAPROXY_CFG.read_text()):
        assert name in lb_env, f"haproxy.cfg reads {name}, which the lb service does not set"
    # Compose's own variables are read from deploy/.env because deploy/ is the project directory: the file has
    # to sit there, and the example says so.
    assert "cp deploy/.env.example deploy/.env" in ENV_EXAMPLE.read_text()


def test_services_and_their_order() -> None:
    found = services()
    assert set(found) == {"postgres", "s3", "migrate", "registry", "lb", "cli"}
    migrate, registry, lb = found["migrate"], found["registry"], found["lb"]

    assert as_argv(migrate["command"]) == ["registry", "db", "upgrade"]
    assert depends_on(migrate) == {"postgres": "service_healthy"}
    assert migrate["restart"] == "no", "a one-shot job"

    assert as_argv(registry["command"])[:2] == ["registry", "serve"]
    assert depends_on(registry) == {
        "postgres": "service_healthy",
        "s3": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert int(registry["deploy"]["replicas"]) >= 2
    assert registry["image"] == migrate["image"] == found["cli"]["image"], "one image for job, replicas and cli"
    assert registry["build"] == migrate["build"]
    context = (COMPOSE.parent / registry["build"]["context"]).resolve()
    assert context == ROOT and (context / registry["build"]["dockerfile"]).is_file()

    assert depends_on(lb) == {"registry": "service_healthy"}
    assert found["cli"]["profiles"] == ["tools"], "run on demand, never started by `up`"


def test_only_the_load_balancer_is_published() -> None:
    found = services()
    published = {name: svc["ports"] for name, svc in found.items() if svc.get("ports")}
    assert list(published) == ["lb"], f"only HAProxy faces the network: {published}"
    (port,) = published["lb"]
    bind, host_port, container_port = str(port).rsplit(":", 2)
    defaults = read_env_file(ENV_EXAMPLE)
    assert (bind, host_port) == (defaults["MODELKEEP_HTTP_BIND"], defaults["MODELKEEP_HTTP_PORT"])
    assert int(container_port) == REGISTRY_PORT
    assert re.search(rf"^\s*bind :{container_port}\s*$", HAPROXY_CFG.read_text(), re.MULTILINE)
    # HAProxy reaches the replicas by the service name, on the port they listen on.
    assert re.search(rf"server-template \S+ \d+ registry:{REGISTRY_PORT} ", HAPROXY_CFG.read_text())
    assert str(REGISTRY_PORT) in [str(p) for p in found["registry"]["expose"]]
    assert found["lb"]["volumes"] == ["./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]


def test_health_checks() -> None:
    found = services()
    for name in LONG_RUNNING:
        check = found[name].get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        assert as_argv(check["test"])[0] == "CMD"
        assert found[name]["restart"] == "unless-stopped"
    assert "/health'" in " ".join(as_argv(found["registry"]["healthcheck"]["test"]))
    assert "http://127.0.0.1:8333/healthz" in as_argv(found["s3"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8404/healthz" in as_argv(found["lb"]["healthcheck"]["test"])
    assert re.search(r"^\s*bind :8404\s*$", HAPROXY_CFG.read_text(), re.MULTILINE)
    assert re.search(r"^\s*monitor-uri /healthz\s*$", HAPROXY_CFG.read_text(), re.MULTILINE)


def test_registry_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = operator_env()
    found = services(env)
    fields = {f"MODELKEEP_{name.upper()}" for name in Settings.model_fields}
    for name in ("migrate", "registry", "cli"):
        settings = found[name]["environment"]
        assert set(settings) <= fields, f"{name}: not registry settings: {sorted(set(settings) - fields)}"
    with monkeypatch.context() as patched:
        for name in fields:
            patched.delenv(name, raising=False)
        for name, value in found["registry"]["environment"].items():
            patched.setenv(name, value)
        parsed = Settings()
    url = make_url(parsed.resolved_database_url)
    assert (url.get_backend_name(), url.host, url.port) == ("postgresql", "postgres", 5432)
    assert (url.username, url.password, url.database) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], "modelkeep")
    assert parsed.resolved_blob_store_url == f"s3://{env['S3_BUCKET']}/blobs"
    assert parsed.s3_endpoint_url == "http://s3:8333"
    assert (parsed.s3_access_key_id, parsed.s3_secret_access_key) == (
        env["S3_ACCESS_KEY_ID"],
        env["S3_SECRET_ACCESS_KEY"],
    )
    assert parsed.migrate_on_start is False, "the migrate job owns migrations"
    assert parsed.s3_create_bucket is True, "a fresh machine has no bucket"
    assert parsed.create_admin_token is False, "replicas start together; the first token is made by hand"
    assert parsed.metrics_public is False
    assert parsed.max_upload_bytes == DEFAULT_MAX_UPLOAD
    assert parsed.public_url in (None, "")
    # The same credentials on both sides of S3, and on both sides of PostgreSQL.
    s3_env = found["s3"]["environment"]
    assert (s3_env["S3_ACCESS_KEY_ID"], s3_env["S3_SECRET_ACCESS_KEY"]) == (
        parsed.s3_access_key_id,
        parsed.s3_secret_access_key,
    )
    assert found["postgres"]["environment"]["POSTGRES_PASSWORD"] == url.password
    for name in ("migrate", "cli"):
        assert found[name]["environment"] == {
            k: v for k, v in found["registry"]["environment"].items() if k in found[name]["environment"]
        }
        assert "MODELKEEP_DATABASE_URL" in found[name]["environment"]


def test_default_pools_fit_postgres_max_connections() -> None:
    """replicas x workers x (pool size + overflow) must fit max_connections, with room for the migrate job,
    `registry` commands and an operator's psql; docs/deploy.md gives the same formula."""
    found = services()
    defaults = read_env_file(ENV_EXAMPLE)
    replicas = int(found["registry"]["deploy"]["replicas"])
    argv = as_argv(found["registry"]["command"])
    workers = int(argv[argv.index("--workers") + 1])
    pool_size = int(found["registry"]["environment"]["MODELKEEP_DB_POOL_SIZE"])
    max_connections = int(as_argv(found["postgres"]["command"])[-1].removeprefix("max_connections="))
    assert (replicas, workers, pool_size) == (
        int(defaults["REGISTRY_REPLICAS"]),
        int(defaults["REGISTRY_WORKERS"]),
        int(defaults["MODELKEEP_DB_POOL_SIZE"]),
    )
    # One engine per worker process on PostgreSQL (reads and writes share it), as registry.db builds it.
    db = Database("postgresql://user:pw@postgres/modelkeep", pool_size=pool_size)
    assert db.read_engine is db.write_engine
    pool = db.write_engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    per_worker = pool.size() + pool._max_overflow
    assert per_worker == 2 * pool_size, "docs/deploy.md and .env.example say 2 x MODELKEEP_DB_POOL_SIZE"
    reserve = 20
    assert replicas * workers * per_worker + reserve <= max_connections


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0,
    reason="the Docker Compose CLI is not installed",
)
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in operator_env().items()))
    command = ["docker", "compose", "--env-file", str(env_file), "-f", str(COMPOSE), "config", "--quiet"]
    subprocess.run(command, check=True, capture_output=True, env={"PATH": os.environ["PATH"]})
    env_file.write_text("")
    refused = subprocess.run(command, capture_output=True, text=True, check=False, env={"PATH": os.environ["PATH"]})
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr


# --- HAProxy ---------------------------------------------------------------------------------------------------


def haproxy_binary() -> str:
    found = shutil.which("haproxy")
    if found is None:
        pytest.fail(
            "haproxy is not installed; deploy/haproxy.cfg is checked with it: apt-get install -y haproxy",
            pytrace=False,
        )
    return found


def test_haproxy_accepts_the_configuration() -> None:
    env = {"PATH": os.environ["PATH"], "MODELKEEP_MAX_UPLOAD_BYTES": str(DEFAULT_MAX_UPLOAD)}
    checked = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, env=env, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[WARNING]" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr


def test_haproxy_settings_for_large_uploads() -> None:
    text = HAPROXY_CFG.read_text()
    settings = {
        words[1]: words[2]
        for words in (line.split() for line in text.splitlines())
        if len(words) == 3 and words[0] == "timeout"
    }

    def seconds(value: str) -> float:
        match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
        assert match, value
        return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2] or "ms"]

    assert seconds(settings["client"]) >= 3600 and seconds(settings["server"]) >= 3600
    assert seconds(settings["http-request"]) <= 60, "headers must arrive quickly; the body is not bound by this"
    directives = [line.split("#")[0].strip() for line in text.splitlines()]
    assert not [d for d in directives if "http-buffer-request" in d], "bodies stream through, never buffered"
    assert "balance leastconn" in directives


STUB_MAX_BODY = 64 * 1024 * 1024


@dataclass
class Stub:
    """A loopback stand-in for one registry replica: answers /health with ``health``, anything else with what it
    received."""

    name: str
    health: int
    seen: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])


def start_stub(stub: Stub) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            declared = int(self.headers.get("Content-Length") or 0)
            digest, length = hashlib.sha256(), 0
            if declared > STUB_MAX_BODY:  # answered at once, as a replica refusing it would
                self.close_connection = True
            else:
                while length < declared and (chunk := self.rfile.read(min(1 << 20, declared - length))):
                    digest.update(chunk)
                    length += len(chunk)
            record = {
                "backend": stub.name,
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "length": length,
                "sha256": digest.hexdigest(),
            }
            stub.seen.append(record)
            status = stub.health if self.path == "/health" else 200
            payload = json.dumps(record).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _answer

    stub.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=stub.server.serve_forever, daemon=True).start()


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"haproxy.cfg changed shape: {old!r} appears {text.count(old)} times"
    return text.replace(old, new)


def on_loopback(text: str, *, port: int, status_port: int, stubs: list[Stub]) -> str:
    """haproxy.cfg with its listeners on loopback ports and its DNS-discovered replicas replaced by the stubs;
    everything else (checks, headers, limits, balancing) as written. Checks run every 200 ms, not 3 s."""
    text = replace_once(text, "bind :5000\n", f"bind 127.0.0.1:{port}\n")
    text = replace_once(text, "bind :8404\n", f"bind 127.0.0.1:{status_port}\n")
    text = replace_once(text, "default-server inter 3s ", "default-server inter 200ms ")
    (template,) = re.findall(r"^ *server-template .*$", text, re.MULTILINE)
    servers = "\n".join(f"    server {stub.name} 127.0.0.1:{stub.port} check" for stub in stubs)
    return replace_once(text, template, servers)


@dataclass
class LoadBalancer:
    url: str
    status_url: str
    stubs: list[Stub]
    log: Path


@pytest.fixture
def load_balancer(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LoadBalancer]:
    """HAProxy with deploy/haproxy.cfg in front of a healthy stub and one whose /health answers 503."""
    limit = getattr(request, "param", None)
    stubs = [Stub("healthy", 200), Stub("unhealthy", 503)]
    for stub in stubs:
        start_stub(stub)
    port, status_port = free_ports(2)
    config = tmp_path / "haproxy.cfg"
    config.write_text(on_loopback(HAPROXY_CFG.read_text(), port=port, status_port=status_port, stubs=stubs))
    env = {"PATH": os.environ["PATH"]} | ({"MODELKEEP_MAX_UPLOAD_BYTES": str(limit)} if limit else {})
    log = tmp_path / "haproxy.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [haproxy_binary(), "-db", "-f", str(config)], stdout=sink, stderr=subprocess.STDOUT, env=env
        )
    lb = LoadBalancer(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{status_port}", stubs, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, f"haproxy exited:\n{log.read_text()}"
            try:
                if httpx.get(f"{lb.status_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"haproxy did not come up:\n{log.read_text()}"
            time.sleep(0.1)
        yield lb
    finally:
        process.terminate()
        process.wait(timeout=10)
        for stub in stubs:
            assert stub.server is not None
            stub.server.shutdown()
            stub.server.server_close()


def test_lb_checks_health_and_routes_only_to_healthy_replicas(load_balancer: LoadBalancer) -> None:
    healthy, unhealthy = load_balancer.stubs
    deadline = time.monotonic() + 20
    streak = 0
    with httpx.Client(base_url=load_balancer.url, timeout=10) as client:
        while streak < 10:
            assert time.monotonic() < deadline, f"the replica failing /health kept getting traffic: {unhealthy.seen}"
            answer = client.get("/api/v1/models")
            assert answer.status_code == 200
            streak = streak + 1 if answer.json()["backend"] == healthy.name else 0
    probes = [seen for seen in healthy.seen + unhealthy.seen if seen["path"] == "/health"]
    assert probes and all(p["method"] == "GET" for p in probes)
    assert {p["backend"] for p in probes} == {healthy.name, unhealthy.name}
    stats = httpx.get(f"{load_balancer.status_url}/stats;csv", timeout=5).text
    rows = {row.split(",")[1]: row.split(",")[17] for row in stats.splitlines() if row.startswith("registry,")}
    assert (rows[healthy.name], rows[unhealthy.name]) == ("UP", "DOWN")


def test_lb_sets_request_id_and_forwarded_for(load_balancer: LoadBalancer) -> None:
    with httpx.Client(base_url=load_balancer.url, timeout=10) as client:
        made = client.get("/api/v1/models").json()["headers"]
        kept = client.get("/api/v1/models", headers={"X-Request-ID": "build-42.step-7"}).json()["headers"]
    assert uuid.UUID(made["x-request-id"]).version == 4
    assert kept["x-request-id"] == "build-42.step-7"
    assert made["x-forwarded-for"] == "127.0.0.1"


def test_lb_streams_bodies_and_hides_metrics(load_balancer: LoadBalancer) -> None:
    body = os.urandom(5 * 1024 * 1024)  # far above HAProxy's buffer: streamed through, not held
    with httpx.Client(base_url=load_balancer.url, timeout=30) as client:
        echoed = client.put("/api/v1/blobs/upload", content=body).json()
        assert (echoed["length"], echoed["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
        assert client.get("/metrics").status_code == 404
    assert not [seen for stub in load_balancer.stubs for seen in stub.seen if seen["path"].startswith("/metrics")]


def declared_length_status(url: str, length: int) -> int:
    """The status of a POST that declares ``length`` bytes and sends none: HAProxy's, or the stub's when
    HAProxy forwarded it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /api/v1/blobs HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
        head = sock.recv(200).decode()
    return int(head.split()[1])


def test_lb_refuses_uploads_over_the_default_limit(load_balancer: LoadBalancer) -> None:
    assert declared_length_status(load_balancer.url, DEFAULT_MAX_UPLOAD + 1) == 413
    assert declared_length_status(load_balancer.url, DEFAULT_MAX_UPLOAD) == 200


@pytest.mark.parametrize("load_balancer", [1000], indirect=True)
def test_lb_upload_limit_comes_from_the_environment(load_balancer: LoadBalancer) -> None:
    with httpx.Client(base_url=load_balancer.url, timeout=10) as client:
        assert client.post("/api/v1/blobs", content=b"x" * 1001).status_code == 413
        assert client.post("/api/v1/blobs", content=b"x" * 1000).json()["length"] == 1000


# --- SeaweedFS -------------------------------------------------------------------------------------------------


def run_entrypoint(env: dict[str, str], args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    path = f"{weed_binary().parent}:{os.environ['PATH']}"
    return subprocess.Popen(["sh", str(SEAWEED_ENTRYPOINT), *args], env={"PATH": path} | env, **kwargs)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"S3_SECRET_ACCESS_KEY": "abc"}, "S3_ACCESS_KEY_ID"),
        ({"S3_ACCESS_KEY_ID": "abc", "S3_SECRET_ACCESS_KEY": ""}, "S3_SECRET_ACCESS_KEY"),
        ({"S3_ACCESS_KEY_ID": 'ab"c', "S3_SECRET_ACCESS_KEY": "abc"}, "only letters"),
        ({"S3_ACCESS_KEY_ID": "abc", "S3_SECRET_ACCESS_KEY": "a b"}, "only letters"),
    ],
)
def test_seaweedfs_entrypoint_refuses_bad_keys(tmp_path: Path, env: dict[str, str], message: str) -> None:
    process = run_entrypoint(env | {"TMPDIR": str(tmp_path)}, [], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode != 0
    assert message in output.decode()
    assert not list(tmp_path.iterdir()), "nothing is written or started"


def s3_client(endpoint: str, key: str, secret: str) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": 1},
            request_checksum_calculation="when_required",
        ),
    )


def test_seaweedfs_entrypoint_serves_s3_with_the_keys_from_the_environment(tmp_path: Path) -> None:
    key, secret = secrets.token_hex(12), secrets.token_hex(24)
    data, scratch = tmp_path / "data", tmp_path / "tmp"
    data.mkdir()
    scratch.mkdir()
    ports = free_ports(8)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    # The script's own flags, with the folders and ports moved so that this run cannot meet another.
    args = [
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=8",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={data / 'filer.sock'}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.localSocket={data / 's3.sock'}",
    ]
    log = tmp_path / "weed.log"
    env = {"S3_ACCESS_KEY_ID": key, "S3_SECRET_ACCESS_KEY": secret, "TMPDIR": str(scratch)}
    with open(log, "wb") as sink:
        process = run_entrypoint(env, args, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        client = s3_client(endpoint, key, secret)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"weed exited:\n{log.read_text()[-4000:]}"
            try:
                client.create_bucket(Bucket="modelkeep")
                client.put_object(Bucket="modelkeep", Key="blobs/probe", Body=b"ok")
                break
            except (BotoCoreError, ClientError):
                assert time.monotonic() < deadline, f"S3 never accepted the keys:\n{log.read_text()[-4000:]}"
                time.sleep(0.25)
        assert client.get_object(Bucket="modelkeep", Key="blobs/probe")["Body"].read() == b"ok"
        assert httpx.get(f"{endpoint}/healthz", timeout=5).status_code == 200, "the compose health check"
        with pytest.raises(ClientError) as refused:
            s3_client(endpoint, key, secrets.token_hex(24)).list_objects_v2(Bucket="modelkeep")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert httpx.get(f"{endpoint}/modelkeep/blobs/probe", timeout=5).status_code == 403, "no anonymous reads"
        (identities,) = scratch.glob("tmp.*")  # mktemp's name
        assert identities.stat().st_mode & 0o077 == 0, "the identity file is owner-only"
        assert json.loads(identities.read_text())["identities"][0]["credentials"] == [
            {"accessKey": key, "secretKey": secret}
        ]
    finally:
        stop(process, [master_grpc, volume_grpc, filer_grpc, s3_grpc])
