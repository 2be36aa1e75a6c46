"""The layers hold: every import points down (import-linter's layers contract in
pyproject.toml: API above QoS and control, above the node and protocol, above transports),
no module imports itself through others (no circle), and no module is too long to read."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent
#: Longer than this, a module wants splitting (docs: "A layout that shows the layers").
MAX_LINES = 600


def test_import_linter_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "lint-imports is not installed (./run test installs import-linter)"
    r = subprocess.run([exe], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every cycle of direct imports (as found by a depth-first walk)."""
    adjacency = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        path.append(module)
        for nxt in adjacency.get(module, ()):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state and nxt in adjacency:
                walk(nxt, path)
        path.pop()
        state[module] = 2

    for m in sorted(adjacency):
        if m not in state:
            walk(m, [])
    return found


def test_no_import_circle() -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    graph = grimp.build_graph("insane", "compat", exclude_type_checking_imports=True)
    assert circles(graph) == []


def test_the_circle_check_can_fail() -> None:
    graph = grimp.ImportGraph()
    for m in ("p.a", "p.b", "p.c"):
        graph.add_module(m)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    assert circles(graph) == [["p.a", "p.b", "p.c", "p.a"]]


@pytest.mark.parametrize("package", ["insane", "compat"])
def test_modules_are_short_enough_to_read(package: str) -> None:
    long = {
        str(p.relative_to(REPO)): n
        for p in (REPO / package).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"
