"""Import and ownership rules of the layout (ARCHITECTURE.md): checked on the source, so a new module that breaks
them fails here, not in review.

- ``apps.trading`` never imports ``apps.control`` (control depends on trading; trading reports through
  :mod:`apps.trading.ports`).
- Only ``apps.control`` creates audit rows or writes a session's status. "Writes" is read from the syntax: a
  ``create``/``update``/``get_or_create``/``update_or_create`` call on ``TradingSession`` (or ``AuditEvent``) with
  a ``status`` keyword (any call, for ``AuditEvent``), or an assignment to ``<session>.status``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "apps"
WRITES = {"create", "update", "get_or_create", "update_or_create", "bulk_create", "bulk_update"}
# names that hold a session in the code base; other models (orders, runs, sweeps) have statuses of their own
SESSION_NAMES = {"session", "s", "sess", "trading_session"}


def _modules(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "migrations" not in p.parts)


def _imports(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
    return out


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _ownership_breaches(path: Path) -> list[str]:
    return _breaches_in(path.read_text(), str(path.relative_to(ROOT)))


def _breaches_in(source: str, label: str) -> list[str]:
    tree = ast.parse(source, label)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES:
            root = _root_name(node.func.value)
            if root == "AuditEvent":
                found.append(f"{label}:{node.lineno} writes AuditEvent")
            if root == "TradingSession" and any(k.arg == "status" for k in node.keywords):
                found.append(f"{label}:{node.lineno} writes TradingSession.status")
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Attribute) and t.attr == "status" and _root_name(t.value) in SESSION_NAMES:
                    found.append(f"{label}:{node.lineno} assigns a session's status")
    return found


# Exceptions to the rules, each with its reason (none today). A new offender fails, and so does a fixed one
# still listed here.
KNOWN_IMPORTS: set[str] = set()
KNOWN_WRITES: set[str] = set()


def test_trading_never_imports_control():
    offenders = {
        str(p.relative_to(ROOT))
        for p in _modules(APPS / "trading")
        for m in _imports(ast.parse(p.read_text()))
        if m == "apps.control" or m.startswith("apps.control.")
    }
    assert offenders == KNOWN_IMPORTS


def test_only_control_writes_session_status_and_audit_rows():
    breaches = {
        b.split(":")[0]
        for p in _modules(APPS)
        if "control" not in p.relative_to(APPS).parts[:1]
        for b in _ownership_breaches(p)
    }
    assert breaches == KNOWN_WRITES


@pytest.mark.parametrize(
    "source",
    [
        "AuditEvent.objects.create(action='x')",
        "TradingSession.objects.filter(pk=1).update(status='halted')",
        "session.status = 'halted'",
    ],
)
def test_the_ownership_check_sees_each_kind_of_write(source):
    """The scanner itself: each kind of write it is meant to catch, it catches."""
    assert _breaches_in(source, "probe.py")
