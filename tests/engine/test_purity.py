"""The engine never imports Django nor any other app (architecture: one pure engine for live, paper and backtests)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import apps.engine

BASE_DIR = Path(__file__).resolve().parents[2]


def test_importing_every_engine_module_imports_neither_django_nor_another_app():
    modules = [m.name for m in pkgutil.walk_packages(apps.engine.__path__, "apps.engine.")]
    assert "apps.engine.core" in modules and "apps.engine.simulation.simulator" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'django' or k.startswith('django.'))\n"
        "bad += sorted(k for k in sys.modules if k.startswith('apps.') and not k.startswith('apps.engine'))\n"
        "print(','.join(bad))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"engine pulled in: {res.stdout.strip()}"
