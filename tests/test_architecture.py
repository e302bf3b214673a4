"""The architecture holds: no import cycles, a web process without torch, tasks sent by name
that the workers know. (The layer contracts themselves run in `make lint`: lint-imports.)"""

from __future__ import annotations

import os
import subprocess
import sys

import grimp

from config.celery import app
from labeling.exports.jobs import RUN_EXPORT
from labeling.webhooks import DELIVER_WEBHOOK
from modeling.models import FINETUNE_MODEL, REFRESH_MODEL
from modeling.scheduling import RESCORE_POOL
from modeling.services.rescoring import SCORE_SHARD


def import_cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan), over direct imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while (member := stack.pop()) != module:
                group.append(member)
            if group:
                cycles.append(sorted([module, *group]))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("config", "labeling", "modeling")
    modules = {m for m in graph.modules if ".migrations" not in m}

    assert import_cycles(graph, modules) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")

    assert import_cycles(graph, {"a", "b", "c"}) == [["a", "b", "c"]]


def test_the_web_process_never_loads_torch_nor_the_workers_code() -> None:
    probe = (
        "import django, sys; django.setup(); "
        "from django.urls import get_resolver; get_resolver().url_patterns; "
        "import config.wsgi; "
        "print(sorted(m for m in ('torch', 'transformers', 'modeling.tasks', "
        "'modeling.services.refresh', 'labeling.tasks') if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"


def test_every_task_sent_by_name_is_one_the_workers_run() -> None:
    app.loader.import_default_modules()
    names = (REFRESH_MODEL, FINETUNE_MODEL, RESCORE_POOL, SCORE_SHARD, DELIVER_WEBHOOK, RUN_EXPORT)

    for name in names:
        assert name in app.tasks, name
