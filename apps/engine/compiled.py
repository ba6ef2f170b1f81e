"""Which implementation of a hot-path module runs: the compiled (Cython) one or its pure-Python reference.

Every compiled module has a readable pure-Python reference beside it with the same API and the same results
(docs/compiled-core.md). The compiled one is used whenever it is built; ``MM_PURE_PYTHON=1`` in the environment
forces every reference (for debugging with pdb and for the equivalence tests, which construct both explicitly
anyway). A compiled module that is missing falls back to the reference so a checkout without a compiler still
runs, but the reason is kept in :data:`FALLBACKS` and the test suite fails on it (tests/engine/test_compiled.py).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

ENV_FLAG = "MM_PURE_PYTHON"

# module name -> why its reference is used instead (ImportError text); filled by load()
FALLBACKS: dict[str, str] = {}


def pure_python() -> bool:
    """True when ``MM_PURE_PYTHON`` asks for the pure-Python references ("1", "true", "yes"; case-insensitive)."""
    return os.environ.get(ENV_FLAG, "").strip().lower() in {"1", "true", "yes"}


def load(name: str) -> ModuleType | None:
    """The compiled module ``name``, or None when the reference must run (flag set, or not built: recorded)."""
    if pure_python():
        return None
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        FALLBACKS[name] = str(exc)
        return None
