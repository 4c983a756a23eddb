"""Import directions (STYLE.md §2): enforced on the source, so a wrong import fails CI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports_of(package: str) -> dict[str, set[str]]:
    """Module file → set of imported top-level dotted names, for every .py file under ``package``."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for module, names in imports_of(package).items():
        for name in names:
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{module} imports {name}")
    return sorted(bad)


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("gates", ("registry", "automations", "monitoring", "litestar", "sqlalchemy", "httpx")),
        ("registry/domain", ("registry.services", "registry.api", "registry.cli", "registry.client", "litestar")),
        ("registry/services", ("registry.api", "registry.cli", "registry.client", "litestar", "httpx", "typer")),
        ("registry/storage", ("registry.services", "registry.api", "registry.cli", "litestar")),
        ("registry/api", ("sqlalchemy", "registry.cli", "registry.client", "typer")),
        ("registry/ui", ("sqlalchemy", "registry.cli", "registry.client", "typer")),
        (
            "registry/client",
            (
                "registry.services",
                "registry.domain",
                "registry.api",
                "registry.db",
                "registry.cli",
                "sqlalchemy",
                "litestar",
            ),
        ),
        ("automations", ("registry.api", "registry.cli")),
        ("monitoring", ("registry.api", "registry.cli")),
    ],
)
def test_import_directions(package: str, forbidden: tuple[str, ...]) -> None:
    assert offenders(package, forbidden) == []


def test_services_never_commit() -> None:
    """The boundary that opened the session owns the transaction; services only flush."""
    bad = [
        str(p.relative_to(ROOT)) for p in (ROOT / "registry" / "services").rglob("*.py") if ".commit(" in p.read_text()
    ]
    assert bad == []


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    # Guard against a checker that silently passes: a known import must be found.
    assert any("sqlalchemy" in line for line in offenders("registry/services", ("sqlalchemy",)))


def test_the_api_process_starts_without_the_gates_engine() -> None:
    # numpy, scipy and pyarrow are ~100 MB of RSS that only gate evaluation needs (server RSS target < 150 MB,
    # docs/benchmarks.md): registry/services/gates.py imports the engine where a gate is parsed or evaluated.
    probe = (
        "import sys, registry.api.app, registry.cli;"
        "print(','.join(m for m in ('gates', 'numpy', 'scipy', 'pyarrow') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "", f"imported at start-up: {loaded.stdout.strip()}"
