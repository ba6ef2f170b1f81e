"""The engine's one set of parameter checks: errors name what and where; bools are not numbers."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from apps.engine.validation import boolean, finite, fraction, integer, non_negative, one_of, positive

ENGINE = Path(__file__).resolve().parents[2] / "apps" / "engine"


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (finite, math.nan, "KappaParams.window_s must be a finite number, got nan"),
        (finite, True, "KappaParams.window_s must be a finite number, got True"),
        (finite, "1", "KappaParams.window_s must be a finite number, got '1'"),
        (positive, 0, "KappaParams.window_s must be > 0, got 0"),
        (positive, math.inf, "KappaParams.window_s must be a finite number, got inf"),
        (non_negative, -1e-9, "KappaParams.window_s must be >= 0, got -1e-09"),
        (integer, 2.5, "KappaParams.window_s must be an integer >= 0, got 2.5"),
        (integer, -1, "KappaParams.window_s must be an integer >= 0, got -1"),
        (boolean, 1, "KappaParams.window_s must be true or false, got 1"),
    ],
)
def test_each_check_names_the_owner_the_field_and_the_value(check, value, message) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check("window_s", value, "KappaParams")


def test_good_values_come_back_as_plain_python_numbers() -> None:
    assert finite("x", np.float64(1.5)) == 1.5 and type(finite("x", 2)) is float
    assert positive("x", 3) == 3.0 and non_negative("x", 0) == 0.0
    assert integer("levels", 2.0, minimum=1) == 2 and type(integer("levels", 2.0)) is int
    assert boolean("flag", False) is False
    assert one_of("kind", "a", ("a", "b")) == "a"
    assert fraction("share", 1.0) == 1.0


def test_a_bare_argument_is_named_without_an_owner() -> None:
    with pytest.raises(ValueError, match=r"^mid must be > 0, got -1$"):
        positive("mid", -1)
    with pytest.raises(ValueError, match=r"^kind must be one of \('a', 'b'\), got 'c'$"):
        one_of("kind", "c", ("a", "b"))
    with pytest.raises(ValueError, match=r"^share must be in \(0, 1\), got 1$"):
        fraction("share", 1, open_low=True, closed_high=False)


def test_no_engine_module_carries_its_own_copy_of_these_checks() -> None:
    copies = re.compile(
        r"^def _(finite|positive|non_negative|finite_positive|require_positive|require_fraction|check)\(", re.M
    )
    found = [
        str(p.relative_to(ENGINE))
        for p in ENGINE.rglob("*.py")
        if p.name != "validation.py" and copies.search(p.read_text())
    ]
    # risk/rules.py keeps _finite: a hot-path predicate on rule inputs (no exception, numpy scalars allowed)
    assert found == ["risk/rules.py"]
