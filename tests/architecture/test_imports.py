"""No import cycle anywhere in storefront, at module granularity: no module reaches itself
through the modules it imports. Every import counts (function-local and ``TYPE_CHECKING``
ones too), so a cycle cannot hide behind a deferred import. The layer order itself is
checked by import-linter (pyproject.toml)."""

from __future__ import annotations

import grimp


def cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """One shortest cycle through each direct import that closes one, as module names from
    the importer back to itself."""
    found: set[tuple[str, ...]] = set()
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycle = (importer, *back)
                # the same cycle found from each of its edges: keep it once, from its least member
                start = cycle.index(min(cycle[:-1]))
                found.add((*cycle[start:-1], *cycle[:start], cycle[start]))
    return sorted(found)


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("storefront", cache_dir=None)
    assert len(graph.modules) > 100  # the whole package was read, not an empty shell
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_a_cycle_is_reported() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert cycles(graph) == [("pkg.a", "pkg.b", "pkg.c", "pkg.a")]
