"""Interleaved A/B of upload throughput: two or more servers side by side, uploads alternating between them.

On a shared machine the speed of the disk and of the cores drifts by a quarter within minutes, so two
benchmark runs taken one after the other can disagree more than the change being measured. This starts
every variant at once (each its own server process, SQLite and blob folder) and uploads the same file to
each in turn, round after round (the order flips every round), so drift hits every variant alike. Per
upload it records MB/s and the server's and the client's CPU seconds per GB.

A variant is ``NAME=TREE`` or ``NAME=TREE:HTTP``. ``TREE`` is a source tree put first on the server's
``PYTHONPATH`` (``.`` for this checkout; an older commit via ``git worktree add /tmp/old COMMIT``).
``HTTP`` is uvicorn's ``--http`` (``auto``, ``httptools``, or an import string such as
``registry.api.server:HttpProtocol``), the server then being run by ``uvicorn`` itself, or ``granian`` (the
app factory served by Granian, when it is installed); without it, by ``registry serve`` as shipped in that
tree. Server CPU is that of the server's whole process tree.

    .venv/bin/python bench/bench_upload_ab.py --variant now=. --variant old=/tmp/old [--size 1G]
                                              [--rounds 8] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bench_artifacts import human, load, make_random_file, mutate_head, parse_size, start_server, timed, upload

from registry.client._http import tune_transport


@dataclass
class Variant:
    name: str
    tree: Path
    http: str | None
    process: subprocess.Popen[bytes] | None = None
    client: httpx.Client | None = None
    url: str = ""
    data_dir: Path = Path()
    rows: list[tuple[float, float, float]] = field(default_factory=list)  # MB/s, server s/GB, client s/GB


def parse_variant(text: str) -> Variant:
    name, _, rest = text.partition("=")
    if not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=TREE[:HTTP], got {text!r}")
    tree, _, http = rest.partition(":")
    return Variant(name=name, tree=Path(tree).resolve(), http=http or None)


def start(variant: Variant, work: Path) -> None:
    server = start_server(
        work / variant.name,
        work,
        extra_env={"PYTHONPATH": str(variant.tree)},
        http=variant.http,
        log_name=f"{variant.name}.log",
    )
    variant.process, variant.url, variant.data_dir = server.process, server.url, server.data_dir
    variant.client = httpx.Client(headers={"authorization": f"Bearer {server.token}"}, timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", type=parse_variant, required=True, help="NAME=TREE[:HTTP]")
    parser.add_argument("--size", type=parse_size, default=parse_size("1G"), help="upload size (default 1G)")
    parser.add_argument("--rounds", type=int, default=8, help="uploads per variant (default 8)")
    parser.add_argument("--workdir", type=Path, default=None, help="folder on the disk to measure")
    args = parser.parse_args()
    variants: list[Variant] = args.variant
    if len({v.name for v in variants}) != len(variants) or len(variants) < 2:
        parser.error("give at least two variants with distinct names")
    tune_transport()
    work = Path(tempfile.mkdtemp(prefix="modelkeep-bench-ab-", dir=args.workdir))
    print(f"work folder {work} (load {load()})", flush=True)
    gb = args.size / 1e9
    try:
        for variant in variants:
            start(variant, work)
        src = work / "src.bin"
        make_random_file(src, args.size)
        for round_ in range(args.rounds):
            for variant in variants if round_ % 2 == 0 else reversed(variants):
                assert variant.client is not None and variant.process is not None
                mutate_head(src)
                made = variant.client.post(f"{variant.url}/api/v1/runs", json={"experiment": "ab"}).json()
                url = f"{variant.url}/api/v1/runs/{made['id']}/artifacts/ab.bin"
                timing, answer = timed(variant.process.pid, upload, variant.client, url, src)
                sha = str(answer["sha256"])
                (variant.data_dir / "blobs" / sha[:2] / sha[2:4] / sha).unlink(missing_ok=True)
                row = (args.size / timing.seconds / 1e6, timing.server_cpu / gb, timing.client_cpu / gb)
                variant.rows.append(row)
                print(
                    f"round {round_ + 1} {variant.name}: {row[0]:.0f} MB/s, CPU s/GB server {row[1]:.2f} "
                    f"client {row[2]:.2f}",
                    flush=True,
                )
    finally:
        for variant in variants:
            if variant.client is not None:
                variant.client.close()
            if variant.process is not None:
                variant.process.terminate()
                variant.process.wait(timeout=15)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{human(args.size)} uploads, {args.rounds} per variant, interleaved (load at end {load()}):\n")
    print("| variant | median MB/s | range MB/s | median server CPU s/GB | median client CPU s/GB |")
    print("|---|---:|---:|---:|---:|")
    for variant in variants:
        mbps = [r[0] for r in variant.rows]
        server = statistics.median(r[1] for r in variant.rows)
        client = statistics.median(r[2] for r in variant.rows)
        median = statistics.median(mbps)
        print(f"| {variant.name} | {median:.0f} | {min(mbps):.0f}-{max(mbps):.0f} | {server:.2f} | {client:.2f} |")


if __name__ == "__main__":
    main()
