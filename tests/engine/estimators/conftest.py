"""Every estimator unit test runs twice: against the pure-Python references and against the compiled classes.

The test modules import the public names (``SigmaEstimator``, ``MicropriceRegression``, ...), which are the compiled
classes when built; the ``estimator_impl`` fixture, parametrized ``reference``/``compiled`` on every test here but
the equivalence test (which builds both itself), rebinds those names for the duration of one test: in the test
module, in the estimator modules (whose own helpers, e.g. ``FillCascade``, build intensities by name) and in
:mod:`apps.engine.estimators.market` (so a ``MarketEstimators`` built in a test uses the same kind).
"""

from __future__ import annotations

import pytest

from apps.engine.estimators import _estimators, adverse, depth_markout, flow, hawkes, kappa, market, microprice, sigma

COMPILED = [
    (adverse, "AdverseSelectionEstimator"),
    (sigma, "SigmaEstimator"),
    (microprice, "MicropriceRegression"),
    (flow, "FlowImbalance"),
    (flow, "TradeArrivalRate"),
    (hawkes, "HawkesIntensity"),
    (kappa, "TradeKappaEstimator"),
    (depth_markout, "DepthMarkoutCurve"),
]
BOTH_EXEMPT = {
    "test_drift_observations_c",
    "test_estimators_equivalence",
    "test_hawkes_maximise",
    "test_reads_equivalence",
    "test_refresh_reads",
    "test_sigma_closed_slots",
    "test_snapshots_equivalence",
}


def pytest_generate_tests(metafunc):
    if metafunc.module.__name__.rsplit(".", 1)[-1] in BOTH_EXEMPT:
        return
    if "estimator_impl" in metafunc.fixturenames:
        metafunc.parametrize("estimator_impl", ["reference", "compiled"], indirect=True)


@pytest.fixture(autouse=True)
def estimator_impl(request, monkeypatch):
    kind = getattr(request, "param", None)
    if kind is None:
        return None
    for mod, name in COMPILED:
        cls = getattr(mod, "Py" + name) if kind == "reference" else getattr(_estimators, name)
        for target in (mod, market, request.module):
            if hasattr(target, name):
                monkeypatch.setattr(target, name, cls)
    return kind
