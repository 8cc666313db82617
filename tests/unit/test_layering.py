"""The package's import graph: folders only import folders below them, and no module cycle exists,
counting imports inside functions (the architecture drawn by ``ls src/thrifty``)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
# bottom → top; a module may import its own layer or any layer below it.
LAYERS = [
    {"types", "errors"},
    {"config"},
    {"data"},
    {"store"},
    {"scoring"},
    {"policy"},
    {"serving"},
    {"offline"},
    {"calibration"},
    {"gateway"},
    {"ui"},
    {"cli", "__main__", ""},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in (SRC / "thrifty").rglob("*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        base = m.split(".") if f.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), str(f))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                prefix = (
                    ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                    if node.level
                    else node.module or ""
                )
                targets = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
            else:
                continue
            for t in targets:
                r = resolve(t)
                if r and r != m and not (mods[r].name == "__init__.py" and m.startswith(r + ".")):
                    graph[m].add(r)
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    return RANK[parts[1] if len(parts) > 1 else ""]


def upward_imports() -> list[str]:
    mods = _modules()
    return sorted(f"{m} -> {t}" for m, ts in _imports(mods).items() for t in ts if _layer(t) > _layer(m))


def cycles() -> list[list[str]]:
    graph = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_every_top_level_part_has_a_layer() -> None:
    names = {
        p.stem if p.suffix == ".py" else p.name for p in (SRC / "thrifty").iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    names.discard("__init__")
    assert names <= set(RANK), f"unplaced parts of the package: {sorted(names - set(RANK))}"


def test_imports_only_point_down() -> None:
    assert upward_imports() == []


def test_no_import_cycles() -> None:
    assert cycles() == []


if __name__ == "__main__":  # python tests/unit/test_layering.py: print the offending edges
    print("\n".join(upward_imports()) or "no upward import")
    print("\n".join(" <-> ".join(c) for c in cycles()) or "no cycle")
