"""Artifact upload/download throughput and server memory, against a plain file copy on the same disk.

Starts a real ``registry serve`` process (SQLite, local blob folder) on a free loopback port in a fresh data
directory under ``--workdir``, creates a run, then for each size:

* generates a random file once (not timed);
* per repetition (interleaved, so load drift hits every operation alike), each timed alone after ``sync``:
  - ``copy``: ``shutil.copyfile`` to the same disk (page cache, no durability),
  - ``copy+fsync``: the same copy followed by ``fsync`` of the target (what the server's durability costs),
  - ``upload``: ``PUT /api/v1/runs/{id}/artifacts/{path}`` from a streaming httpx client (a generator of
    1 MiB chunks, explicit ``content-length``), until the server has answered (spooled, hashed, fsynced,
    renamed into the blob store, row committed),
  - ``download``: ``GET`` on the same path, streamed into a file on the same disk;
* verifies the sha256 the server reports and the sha256 of the downloaded bytes (not timed).

Each repetition changes the file's first bytes so every upload stores a new blob (content addressing would
otherwise turn repetitions 2..N into de-duplicated no-ops). Then it samples the server's RSS every 20 ms
(``/proc/<pid>/status`` VmRSS, plus VmHWM reset before) around a ``--rss-size`` upload and download.

Prints a Markdown table (``--markdown-out`` also writes it) and removes everything it wrote.

    .venv/bin/python bench/bench_artifacts.py [--sizes 100M,1G] [--rss-size 2G] [--repeat 3]
                                              [--workdir DIR] [--markdown-out FILE] [--keep]

Sizes take K/M/G suffixes (binary: 1M = 2**20 bytes); throughput is reported in MB/s (10**6 bytes/s).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from registry.client._http import tune_transport

T = TypeVar("T")
CHUNK = 1024 * 1024
UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1] if text and text[-1] in UNITS else ""
    number = text[: len(text) - len(unit)] if unit else text
    return int(float(number) * UNITS[unit])


def human(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mem_total() -> str:
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        return f"{kib / 1024**2:.0f} GiB"
    except (OSError, ValueError, IndexError):
        return "? GiB"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# --------------------------------------------------------------------------------------------- files


def make_random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(CHUNK, left)
            f.write(os.urandom(n))
            left -= n


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def mutate_head(path: Path) -> str:
    """Overwrite the first 32 bytes with fresh random bytes (a new blob for the store); return the new sha256."""
    with open(path, "r+b") as f:
        f.write(os.urandom(32))
    return sha256_file(path)


def copy_fsync(src: Path, dst: Path) -> None:
    """``shutil.copyfile`` made durable: what the server's spool pays for (it fsyncs before the rename)."""
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------- server


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    token: str
    data_dir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def start_server(
    data_dir: Path,
    workdir: Path,
    *,
    extra_env: dict[str, str] | None = None,
    http: str | None = None,
    log_name: str = "server.log",
) -> Server:
    """``registry serve`` on a fresh data folder (or the empty database ``MODELKEEP_DATABASE_URL`` in
    ``extra_env`` names) and a free port, with an admin token. ``http``: run ``uvicorn --http HTTP`` on the app
    factory instead; ``extra_env`` (e.g. a ``PYTHONPATH`` naming another source tree) goes to every process."""
    data_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env.update({"MODELKEEP_DATA_DIR": str(data_dir), "MODELKEEP_CREATE_ADMIN_TOKEN": "false", **(extra_env or {})})
    # Migrate first: `registry token create` on a database refuses one that does not exist or has no schema
    # (unless --init, which older trees compared by bench_upload_ab.py do not know); `db upgrade` works in both.
    for command, what in (
        (["db", "upgrade"], "migrate the database"),
        (["token", "create", "bench", "--role", "admin", "--json"], "create a token"),
    ):
        made = subprocess.run(
            [sys.executable, "-m", "registry", *command],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0:
            raise RuntimeError(f"could not {what}:\n{made.stdout}\n{made.stderr}")
    token = json.loads(made.stdout)["token"]
    return launch(data_dir, workdir, env, token=token, http=http, log_name=log_name)


def launch(
    data_dir: Path, workdir: Path, env: dict[str, str], *, token: str, http: str | None = None, log_name: str
) -> Server:
    """Start a server process on the registry already in ``data_dir`` (and ``env``) on a free port; wait for
    ``/health``. ``token`` is one the registry accepts."""
    port = free_port()
    log = workdir / log_name
    if http is None:
        command = ["registry", "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    elif http == "granian":
        # Granian (Rust HTTP server, ASGI interface) on the same app factory; one worker, as the others.
        command = ["granian", "--interface", "asgi", "--factory", "registry.api.app:from_env", "--host"]
        command += ["127.0.0.1", "--port", str(port), "--workers", "1", "--log-level", "warning"]
    else:
        command = ["uvicorn", "--factory", "registry.api.app:from_env", "--port", str(port), "--http", http]
        command += ["--log-level", "warning"]
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", *command], env=env, cwd=workdir, stdout=sink, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return Server(url=url, process=process, token=token, data_dir=data_dir, log=log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


# --------------------------------------------------------------------------------------------- memory


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of ``pid`` in bytes."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(rest.split()[0]) * 1024
    return found


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and the processes under it (all their threads): a
    server's workers and helper processes count as the server."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in tree:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def reset_hwm(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of ``pid`` (``echo 5 > clear_refs``); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def tree_rss(pid: int) -> int:
    """RSS of ``pid`` plus any children (``registry serve`` runs uvicorn in-process with one worker)."""
    total = proc_status(pid).get("VmRSS", 0)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        try:
            total += tree_rss(int(child))
        except (OSError, ValueError):
            pass
    return total


def tree_pss(pid: int) -> int:
    """PSS of ``pid`` plus its descendants: each page shared by n of them counts 1/n in each, so shared
    libraries and the pages forked workers share with their fork server are counted once, unlike RSS sums."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
                break
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        try:
            total += tree_pss(int(child))
        except (OSError, ValueError):
            pass
    return total


class RssSampler:
    """Samples the RSS of a process tree every ``interval`` seconds from a background thread (with ``pss``,
    its PSS too: :func:`tree_pss`)."""

    def __init__(self, pid: int, interval: float = 0.02, *, pss: bool = False) -> None:
        self.pid = pid
        self.interval = interval
        self.pss = pss
        self.samples: list[int] = []
        self.pss_samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(tree_rss(self.pid))
                if self.pss:
                    self.pss_samples.append(tree_pss(self.pid))
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)

    @property
    def peak_pss(self) -> int:
        return max(self.pss_samples, default=0)


# --------------------------------------------------------------------------------------------- transfers


def read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def upload(client: httpx.Client, url: str, src: Path) -> dict[str, object]:
    size = src.stat().st_size
    response = client.put(
        url,
        content=read_chunks(src),
        headers={"content-length": str(size), "content-type": "application/octet-stream"},
    )
    if response.status_code != 201:
        raise RuntimeError(f"upload failed: {response.status_code} {response.text[:500]}")
    return dict(response.json())


def download(client: httpx.Client, url: str, dst: Path) -> int:
    written = 0
    with client.stream("GET", url) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"download failed: {response.status_code} {response.text[:500]}")
        with open(dst, "wb") as f:
            for chunk in response.iter_raw():
                f.write(chunk)
                written += len(chunk)
    return written


@dataclass
class Timing:
    seconds: float
    client_cpu: float
    server_cpu: float


def timed(server_pid: int, fn: Callable[..., T], *args: Any) -> tuple[Timing, T]:
    """``fn(*args)``, its wall time and the CPU seconds this process and the server used meanwhile."""
    os.sync()  # start every measurement with no dirty pages left over from the previous one
    cpu0, srv0 = own_cpu(), proc_cpu(server_pid)
    start = time.perf_counter()
    value = fn(*args)
    seconds = time.perf_counter() - start
    return Timing(seconds, own_cpu() - cpu0, proc_cpu(server_pid) - srv0), value


# --------------------------------------------------------------------------------------------- report

OPS = ("copy", "copy+fsync", "upload", "download")


@dataclass
class SizeResult:
    size: int
    timings: dict[str, list[Timing]] = field(default_factory=lambda: {op: [] for op in OPS})

    def mbps(self, op: str) -> list[float]:
        return [self.size / t.seconds / 1e6 for t in self.timings[op]]

    def cpu_per_gb(self, op: str) -> tuple[float, float]:
        """Median (client or copying process, server) CPU seconds per 10^9 bytes."""
        gb = self.size / 1e9
        return (
            statistics.median(t.client_cpu for t in self.timings[op]) / gb,
            statistics.median(t.server_cpu for t in self.timings[op]) / gb,
        )

    def best(self, op: str) -> float:
        return max(self.mbps(op))

    def median(self, op: str) -> float:
        return statistics.median(self.mbps(op))


@dataclass
class RssResult:
    size: int
    before: int
    peak_upload: int
    hwm_upload: int | None
    after_upload: int
    peak_download: int
    after_download: int


def mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def render(results: list[SizeResult], rss: RssResult | None, meta: dict[str, str], repeat: int) -> str:
    lines = [
        f"Machine: {meta['machine']}. Load average (1/5/15 min) at start {meta['load_start']}, "
        f"at end {meta['load_end']}. Best and median of {repeat}; MB = 10^6 bytes. "
        "Every operation reads a source that is in the page cache and writes to the disk of the work folder.",
        "",
        "| size | operation | best MB/s | median MB/s | ÷ copy (best / median) | ÷ copy+fsync (best / median) "
        "| CPU s/GB: client (or cp) + server |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for op in OPS:
            vs_copy = f"{r.best(op) / r.best('copy'):.0%} / {r.median(op) / r.median('copy'):.0%}"
            vs_sync = f"{r.best(op) / r.best('copy+fsync'):.0%} / {r.median(op) / r.median('copy+fsync'):.0%}"
            if op == "copy":
                vs_copy = "—"
            if op == "copy+fsync":
                vs_sync = "—"
            client_cpu, server_cpu = r.cpu_per_gb(op)
            cpu = f"{client_cpu:.2f}" if op in ("copy", "copy+fsync") else f"{client_cpu:.2f} + {server_cpu:.2f}"
            lines.append(
                f"| {human(r.size)} | {op} | {r.best(op):.0f} | {r.median(op):.0f} | {vs_copy} | {vs_sync} | {cpu} |"
            )
    if rss is not None:
        hwm = mb(rss.hwm_upload) if rss.hwm_upload is not None else "n/a"
        lines += [
            "",
            f"Server RSS around a {human(rss.size)} transfer (sampled every 20 ms; VmHWM = kernel peak mark, "
            "reset just before the upload):",
            "",
            "| before | peak during upload | VmHWM during upload | after upload | peak during download "
            "| after download |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {mb(rss.before)} | {mb(rss.peak_upload)} | {hwm} | {mb(rss.after_upload)} | "
            f"{mb(rss.peak_download)} | {mb(rss.after_download)} |",
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- main


def bench_size(client: httpx.Client, server: Server, run_id: str, work: Path, size: int, repeat: int) -> SizeResult:
    src = work / f"src-{size}.bin"
    dst = work / "copy.bin"
    got = work / "download.bin"
    print(f"[{human(size)}] generating the source file ...", flush=True)
    make_random_file(src, size)
    result = SizeResult(size=size)
    try:
        for rep in range(repeat):
            sha = mutate_head(src)
            name = f"bench/{size}/{rep}.bin"
            url = f"{server.url}/api/v1/runs/{run_id}/artifacts/{name}"

            pid = server.pid
            timing, _ = timed(pid, shutil.copyfile, src, dst)
            result.timings["copy"].append(timing)
            dst.unlink()

            timing, _ = timed(pid, copy_fsync, src, dst)
            result.timings["copy+fsync"].append(timing)
            dst.unlink()

            timing, answer = timed(pid, upload, client, url, src)
            result.timings["upload"].append(timing)
            if answer.get("sha256") != sha or answer.get("size") != size:
                raise RuntimeError(f"server stored {answer}, expected sha256 {sha} and size {size}")

            timing, written = timed(pid, download, client, url, got)
            result.timings["download"].append(timing)
            if written != size or sha256_file(got) != sha:
                raise RuntimeError("downloaded bytes differ from the uploaded file")
            got.unlink()
            # The blob is verified and no longer needed: drop it so GBs do not pile up across repetitions.
            (server.data_dir / "blobs" / sha[:2] / sha[2:4] / sha).unlink(missing_ok=True)
            print(
                f"[{human(size)}] rep {rep + 1}/{repeat}: "
                + ", ".join(f"{op} {size / result.timings[op][-1].seconds / 1e6:.0f} MB/s" for op in OPS)
                + f"  (load {load()})",
                flush=True,
            )
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
        got.unlink(missing_ok=True)
    return result


def bench_rss(client: httpx.Client, server: Server, run_id: str, work: Path, size: int) -> RssResult:
    src = work / f"rss-{size}.bin"
    got = work / "rss-download.bin"
    print(f"[rss {human(size)}] generating the source file ...", flush=True)
    make_random_file(src, size)
    try:
        sha = sha256_file(src)
        url = f"{server.url}/api/v1/runs/{run_id}/artifacts/bench/rss.bin"
        os.sync()
        time.sleep(0.5)
        before = tree_rss(server.pid)
        hwm_ok = reset_hwm(server.pid)
        with RssSampler(server.pid) as up:
            answer = upload(client, url, src)
        hwm = proc_status(server.pid).get("VmHWM") if hwm_ok else None
        after_upload = tree_rss(server.pid)
        if answer.get("sha256") != sha:
            raise RuntimeError(f"server stored {answer}, expected sha256 {sha}")
        with RssSampler(server.pid) as down:
            download(client, url, got)
        after_download = tree_rss(server.pid)
        if sha256_file(got) != sha:
            raise RuntimeError("downloaded bytes differ from the uploaded file")
        (server.data_dir / "blobs" / sha[:2] / sha[2:4] / sha).unlink(missing_ok=True)
    finally:
        src.unlink(missing_ok=True)
        got.unlink(missing_ok=True)
    result = RssResult(
        size=size,
        before=before,
        peak_upload=max(up.peak, after_upload),
        hwm_upload=hwm,
        after_upload=after_upload,
        peak_download=max(down.peak, after_download),
        after_download=after_download,
    )
    print(
        f"[rss {human(size)}] before {mb(before)}, peak upload {mb(result.peak_upload)} "
        f"(VmHWM {mb(hwm) if hwm else 'n/a'}), peak download {mb(result.peak_download)}",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100M,1G", help="comma-separated file sizes (default 100M,1G)")
    parser.add_argument("--rss-size", default="2G", help="upload size for the server-RSS check; 0 skips it")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per size (best and median reported)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="folder on the disk to measure (a fresh subfolder is made and removed); default: the system temp folder",
    )
    parser.add_argument("--markdown-out", type=Path, default=None, help="also write the Markdown table here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (server log, database)")
    args = parser.parse_args(argv)

    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    rss_size = parse_size(args.rss_size)
    parent = args.workdir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="modelkeep-bench-artifacts-", dir=parent))
    meta = {
        "machine": f"{os.cpu_count()} CPUs, {mem_total()} RAM, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        "load_start": load(),
    }
    print(f"work folder {work} (load {meta['load_start']})", flush=True)
    server: Server | None = None
    try:
        server = start_server(work / "data", work)
        print(f"server pid {server.pid} on {server.url}", flush=True)
        headers = {"authorization": f"Bearer {server.token}"}
        timeout = httpx.Timeout(600.0, connect=10.0)
        tune_transport()  # the SDK's own transport setting (1 MiB socket reads), as `registry pull` uses
        with httpx.Client(headers=headers, timeout=timeout) as client:
            made = client.post(f"{server.url}/api/v1/runs", json={"experiment": "bench-artifacts", "name": "bench"})
            if made.status_code != 201:
                raise RuntimeError(f"could not create a run: {made.status_code} {made.text}")
            run_id = str(made.json()["id"])
            results = [bench_size(client, server, run_id, work, size, args.repeat) for size in sizes]
            rss = bench_rss(client, server, run_id, work, rss_size) if rss_size > 0 else None
        meta["load_end"] = load()
        table = render(results, rss, meta, args.repeat)
        print()
        print(table)
        if args.markdown_out:
            args.markdown_out.write_text(table)
    finally:
        if server is not None:
            stop_server(server)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
