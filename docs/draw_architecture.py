"""Draw the library's layers from its imports into docs/architecture.md (a Mermaid chart between markers).

    python docs/draw_architecture.py           # rewrite the chart
    python docs/draw_architecture.py --check   # exit 1 if the chart is not the code's (tests run this)

Every import counts, those inside functions and by importlib too. A part is a first-level package or module of `tunelab`;
an arrow A --> B says some module of A imports one of B (arrows a longer way implies are left out). Parts
are listed from the top layer (the command line) down: a part sits below everything that imports it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tunelab"
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- layers: begin (python docs/draw_architecture.py) -->", "<!-- layers: end -->"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The tunelab modules a file imports, resolved from relative imports; a string that is exactly a module's
    name counts too (what `importlib.import_module` is given)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tunelab")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("tunelab"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}  # `from . import corpora` names a module
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("tunelab."):
            found.add(node.value)
    return found


def part(module: str) -> str:
    return ".".join(module.split(".")[:2])


def part_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    parts = {part(m) for m in modules if m != "tunelab"}
    graph: dict[str, set[str]] = {p: set() for p in parts}
    for name, path in modules.items():
        if name == "tunelab":
            continue
        for target in imports_of(path):
            if target in modules and part(target) != part(name) and part(target) in parts:
                graph[part(name)].add(part(target))
    return graph


def layers(graph: dict[str, set[str]]) -> list[list[str]]:
    """Parts by layer, top first; raises on a cycle (a part both above and below another)."""
    depth: dict[str, int] = {}

    def height(p: str, seen: tuple = ()) -> int:  # 0: imports no other part
        if p in seen:
            raise ValueError("import cycle between parts: " + " -> ".join((*seen, p)))
        if p not in depth:
            depth[p] = 1 + max((height(q, (*seen, p)) for q in graph[p]), default=-1)
        return depth[p]

    for p in graph:
        height(p)
    by_depth = defaultdict(list)
    for p, d in depth.items():
        by_depth[d].append(p)
    return [sorted(by_depth[d]) for d in sorted(by_depth, reverse=True)]


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), list(graph[start])
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += graph[p]
    return seen


def reduced(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The arrows no longer way implies (A --> B is left out where A reaches B through another part)."""
    return {p: {q for q in targets if not any(q in reachable(graph, r) for r in targets - {q})}
            for p, targets in graph.items()}


def chart(graph: dict[str, set[str]]) -> str:
    def node(p: str) -> str:
        return p.removeprefix("tunelab.").replace(".", "_")

    lines = ["```mermaid", "flowchart TD"]
    for i, layer in enumerate(layers(graph)):
        lines.append(f"  subgraph layer{i}[\" \"]")
        lines += [f"    {node(p)}[{p.removeprefix('tunelab.')}]" for p in layer]
        lines.append("  end")
    shown = reduced(graph)
    for p in sorted(shown):
        lines += [f"  {node(p)} --> {node(q)}" for q in sorted(shown[p])]
    lines.append("```")
    return "\n".join(lines)


def rewritten(text: str, graph: dict[str, set[str]]) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{chart(graph)}\n{END}{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the chart differs from the code's")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    new = rewritten(text, part_graph())
    if args.check:
        if new != text:
            print(f"{DOC} is not the code's: run python docs/draw_architecture.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
