"""Fail on any import cycle between striate's modules, function-level imports included (make lint runs it).

import-linter's layers contract keeps imports one-way between the layers; this check covers cycles
inside a layer too (a package and its modules, two modules of one package), which a layers contract
cannot see. Usage: python scripts/import_cycles.py [PACKAGE]
"""

from __future__ import annotations

import sys

import grimp


def import_cycles(package: str) -> list[list[str]]:
    """Every group of modules that import each other in a circle (strongly connected components > 1)."""
    graph = grimp.build_graph(package)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(root: str) -> None:
        # Tarjan's algorithm, iterative: deep import chains must not hit the recursion limit.
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(cycles)


def main() -> int:
    """Print each cycle with the imports that close it; exit 1 when there is any."""
    package = sys.argv[1] if len(sys.argv) > 1 else "striate"
    cycles = import_cycles(package)
    for group in cycles:
        print("import cycle: " + " <-> ".join(group))
    if cycles:
        print(f"{len(cycles)} import cycle(s) in {package}: move the shared code down a layer, "
              "or pass what is needed as an argument")
        return 1
    print(f"no import cycles in {package}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
