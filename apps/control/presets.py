"""Named parameter presets for a new paper or replay session (the console's start form offers them).

A preset is a partial ``params`` object as :func:`apps.trading.runtime.build_session_config` reads it: only what
differs from the engine's documented defaults (:class:`apps.engine.quoting.quoter.QuoterParams`,
:class:`apps.engine.core.StrategyParams`, :mod:`apps.engine.risk.session`). Units as there: γ is dimensionless
per unit of inventory risk, Q_max and order sizes in base units, distances in bps of mid, capital in quote currency.
Every preset is validated by ``build_session_config`` in ``tests/dashboard/test_overview.py``.

* ``default``: the engine's defaults, unchanged (γ₀ = 5000, Q_max = 0.05, one level of 0.005 per side).
* ``conservative``: a smaller book and faster inventory mean-reversion: γ₀ doubled to 10000 (stronger skew per unit
  of inventory), Q_max 0.02 and orders of 0.002, and a tighter drawdown rule: a 1 % drawdown from peak equity on
  10,000 of capital halts the session (the :class:`~apps.engine.risk.rules.DrawdownRule` default is 5 %).
* ``wide``: quotes further from the mid and a ladder: a prior adverse selection of 2 bps (default 0.5) pushes each
  quote out, three levels per side 2 bps apart, each the default order size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    label: str  # one line for the form's choice
    params: dict[str, Any]


PRESETS: tuple[Preset, ...] = (
    Preset("default", "default: the engine's documented defaults", {}),
    Preset(
        "conservative",
        "conservative: γ₀ 10000, Q_max 0.02, orders 0.002, halt at 1 % drawdown",
        {
            "strategy": {"gamma": 10000.0, "max_inventory": 0.02, "order_size": 0.002},
            "risk": {"capital_quote": 10_000.0, "drawdown": {"max_drawdown_frac": 0.01}},
        },
    ),
    Preset(
        "wide",
        "wide: 2 bps adverse-selection prior, 3 levels 2 bps apart",
        {"strategy": {"adverse_selection_bps": 2.0, "levels": 3, "level_spacing_bps": 2.0}},
    ),
)

_BY_NAME = {p.name: p for p in PRESETS}


def names() -> list[str]:
    return [p.name for p in PRESETS]


def preset_params(name: str) -> dict[str, Any]:
    """A copy of the preset's ``params`` (callers may add sections); ValueError naming the known presets."""
    preset = _BY_NAME.get(name)
    if preset is None:
        raise ValueError(f"preset must be one of {', '.join(names())}, got {name!r}")
    return copy.deepcopy(preset.params)
