"""``arcgap.commands`` has no import cycle (issue 15: commands/docker.py and commands/transfer.py imported each
other): no two of its modules reach each other, directly or through any other module, lazy imports included."""

from __future__ import annotations

import itertools

import grimp


def test_no_two_command_modules_import_each_other() -> None:
    graph = grimp.build_graph("arcgap")
    modules = sorted(m for m in graph.modules if m.startswith("arcgap.commands."))
    assert "arcgap.commands.endpoints" in modules and "arcgap.commands.docker" in modules
    def reaches(a: str, b: str) -> bool:
        return graph.find_shortest_chain(importer=a, imported=b) is not None

    cycles = [(a, b) for a, b in itertools.combinations(modules, 2) if reaches(a, b) and reaches(b, a)]
    assert cycles == []


def test_only_the_endpoints_module_picks_the_docker_engine_path() -> None:
    graph = grimp.build_graph("arcgap")
    importers = graph.find_modules_that_directly_import("arcgap.commands.docker")
    assert importers == {"arcgap.commands.endpoints"}
