"""Run a test module against the reference paper venue and driver and against the compiled ones.

``apps.engine.execution.paper.PaperVenue`` and ``apps.engine.simulation.backtest.EngineLoop`` are the compiled
classes when built (``_paper.pyx``, ``_backtest.pyx``); ``PyPaperVenue`` and ``PyEngineLoop`` are their pure-Python
references. A module opts in with an autouse fixture::

    @pytest.fixture(autouse=True, params=VARIANTS)
    def variant(request, monkeypatch):
        return select(request.param, monkeypatch, request.module)

which rebinds the module's own ``PaperVenue`` / ``EngineLoop`` names for each test, so every test runs twice.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from apps.engine.execution import paper
from apps.engine.simulation import backtest

VARIANTS = ["reference", "compiled"]


def classes(variant: str) -> tuple[type, type]:
    """(venue class, driver class) of ``variant``."""
    if variant == "reference":
        return paper.PyPaperVenue, backtest.PyEngineLoop
    return paper.PaperVenue, backtest.EngineLoop


def select(variant: str, monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> str:
    if variant == "compiled" and not (paper.PAPER_COMPILED and backtest.DRIVER_COMPILED):
        pytest.skip("the compiled venue/driver is not selected (MM_PURE_PYTHON, or not built: test_compiled fails)")
    venue_cls, loop_cls = classes(variant)
    for name, cls in (("PaperVenue", venue_cls), ("EngineLoop", loop_cls)):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, cls)
    return variant
