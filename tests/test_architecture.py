"""The layering, checked: no import cycles among clawfleet's modules, and nothing below the CLI
imports the CLI.

The graph is read from the source with `ast`, imports inside functions included: a function-level
import is how a cycle hides (it runs later, so nothing breaks at import time, but the two modules
still need each other). Imports under `if TYPE_CHECKING:` are left out; they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import clawfleet

SRC = Path(clawfleet.__file__).parent
CLI_LAYER = ("clawfleet.cli", "clawfleet.__main__", "clawfleet.commands")

# Imports that close a cycle and would need a redesign to remove, each with why. The test
# ignores exactly these edges (importer, imported); any other cycle fails it.
ALLOWED = {
    # agents/__init__.py is both the protocol every adapter imports (Agent, AgentJob) and the
    # factory that picks one (make_agent, agent_kinds), importing the adapters inside functions
    # so that a runner loads only its own. Ending it means moving the factory out of the package
    # and changing every caller of make_agent (acp.py among them, which makes other kinds).
    *{("clawfleet.agents", f"clawfleet.agents.{kind}")
      for kind in ("acp", "aider", "builtin", "claude", "codex", "command", "gemini", "opencode")},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def _owner(name: str) -> str | None:
    """The module a dotted name lives in: `clawfleet.store.Store` -> `clawfleet.store`."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_only(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return skipped


def imports_of(module: str) -> dict[str, int]:
    """The clawfleet modules `module` imports, each with the line of its first import."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from . import store` names a module; `from .store import Store` names a thing in one
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                     for alias in node.names]
        else:
            continue
        for name in names:
            owner = _owner(name) if name.split(".")[0] == "clawfleet" else None
            if owner and owner != module:
                found.setdefault(owner, node.lineno)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def _cycles(graph: dict[str, dict[str, int]]) -> list[tuple[set[str], list[str]]]:
    """Each group of modules that import each other (Tarjan), with one cycle in it as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:
        start = min(group)
        # shortest way back to start inside the group (breadth first)
        paths = {start: [start]}
        frontier = [start]
        while frontier:
            node = frontier.pop(0)
            if start in graph[node]:
                cycles.append((group, paths[node] + [start]))
                break
            for nxt in graph[node]:
                if nxt in group and nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    frontier.append(nxt)
    return cycles


def _show(group: set[str], cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    members = ", ".join(sorted(m.removeprefix("clawfleet.") for m in group))
    return f"{len(group)} modules ({members}), e.g. " + " -> ".join(f"{a.removeprefix('clawfleet.')} (line {graph[a][b]})"
                       for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1].removeprefix('clawfleet.')}"


def test_no_import_cycles():
    graph = {module: {b: line for b, line in edges.items() if (module, b) not in ALLOWED}
             for module, edges in GRAPH.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_show(g, c, graph) for g, c in cycles)


def test_the_allow_list_names_only_imports_that_exist():
    stale = [edge for edge in ALLOWED if edge[1] not in GRAPH.get(edge[0], {})]
    assert not stale, f"these allowed imports are gone; take them off ALLOWED: {stale}"


def test_nothing_below_the_cli_imports_the_cli():
    def in_cli(module: str) -> bool:
        return any(module == layer or module.startswith(layer + ".") for layer in CLI_LAYER)

    upward = [f"{module.removeprefix('clawfleet.')} imports {target.removeprefix('clawfleet.')} (line {line})"
              for module, edges in sorted(GRAPH.items()) if not in_cli(module)
              for target, line in edges.items() if in_cli(target)]
    assert not upward, "domain modules import the CLI layer:\n" + "\n".join(upward)


def test_orchestrator_size_for_the_note(capsys):
    lines = len((SRC / "orchestrator.py").read_text().splitlines())
    with capsys.disabled():
        print(f"\norchestrator.py: {lines} lines")
    assert lines > 0
