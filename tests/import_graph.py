"""Print dlcli's import graph (module-level and function-level imports) by stage, and its
cycles. Usage: `python tests/import_graph.py` (exit 1 when a cycle exists).

Stages run one way: a module may import its own stage and those before it, never after.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dlcli"

# Each module's stage, in the order data flows: a top-level module or a package of dlcli.
# `runs` (the run folder, the store every later stage writes through) comes before the data
# and training that write into it, and knows nothing of them.
STAGES = [
    ("basics", ["errors", "files"]),
    ("config", ["config"]),
    ("runtime", ["runtime"]),
    ("runs", ["runs"]),
    ("tracking", ["tracking"]),
    ("data", ["data"]),
    ("init", ["init"]),
    ("model", ["model"]),
    ("training", ["training"]),
    ("use", ["use"]),
    ("serving", ["serve"]),
    ("tuning", ["tuning"]),
    ("CLI", ["cli", "__main__"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                found = resolve(target) if target.startswith("dlcli") else None
                if found and found not in (m, "dlcli"):  # the package facade re-exports lazily
                    edges[m].add(found)
    return edges


def stage_of(module: str) -> int:
    short = module.removeprefix("dlcli.").split(".")[0]
    for index, (_, names) in enumerate(STAGES):
        if short in names:
            return index
    return -1


def backward_edges(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a module to one of a later stage (or of no stage)."""
    return sorted(
        (a, b)
        for a, targets in edges.items()
        if a != "dlcli"
        for b in targets
        if stage_of(b) < 0 or stage_of(a) < 0 or stage_of(b) > stage_of(a)
    )


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def main() -> int:
    edges = graph()
    for index, (stage, _) in enumerate(STAGES):
        print(f"{stage}:")
        for module in sorted(m for m in edges if stage_of(m) == index):
            print(f"  {module:<28} -> {', '.join(sorted(edges[module])) or '(nothing of dlcli)'}")
    bad = backward_edges(edges)
    for a, b in bad:
        print(f"backward: {a} -> {b}")
    found = cycles(edges)
    for component in found:
        print("cycle:", " <-> ".join(component))
    print(
        f"{len(edges)} modules, {sum(map(len, edges.values()))} imports, "
        f"{len(found)} cycles, {len(bad)} backward imports"
    )
    return 1 if found or bad else 0


if __name__ == "__main__":
    sys.exit(main())
