from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import sys
import time
import traceback
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _run_params(names: list[str]) -> dict[str, inspect.Parameter]:
    """The keyword parameters of the benchmarks' ``run()`` (a module that fails to import is reported later)."""
    params: dict[str, inspect.Parameter] = {}
    for name in names:
        try:
            params.update(inspect.signature(importlib.import_module(f"benchmarks.{name}").run).parameters)
        except Exception:  # noqa: BLE001, S112 - main() runs it again and reports the failure in the table
            continue
    return params


def _options(args: list[str], params: dict[str, inspect.Parameter]) -> tuple[set[str], dict[str, object]]:
    """Names of the benchmarks to run, and options for their ``run()``: ``--hours 24`` is ``run(hours=24.0)`` (the
    value converted to the type of the parameter's default), ``--keep-decisions`` sets a parameter whose default is
    a bool. Every selected module that takes the parameter gets it."""
    only: set[str] = set()
    opts: dict[str, object] = {}
    it = iter(args)
    for a in it:
        if not a.startswith("--"):
            only.add(a)
            continue
        key = a[2:].replace("-", "_")
        if key not in params:
            raise SystemExit(f"no benchmark's run() takes {a}")
        default = params[key].default
        if isinstance(default, bool):
            opts[key] = True
            continue
        value = next(it, None)
        if value is None:
            raise SystemExit(f"{a} needs a value")
        opts[key] = value if default is inspect.Parameter.empty or default is None else type(default)(value)
    return only, opts


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmweb.settings")
    import benchmarks

    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    only, opts = _options(argv[1:], _run_params(names) if any(a.startswith("--") for a in argv[1:]) else {})
    selected = [n for n in names if not only or n in only or n.removeprefix("bench_") in only]
    rows: list[tuple[str, dict]] = []
    failed = 0
    for name in selected:
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
            params = inspect.signature(mod.run).parameters
            for row in mod.run(**{k: v for k, v in opts.items() if k in params}):
                rows.append((name.removeprefix("bench_"), row))
        except Exception:  # noqa: BLE001 - report and go on with the other benchmarks
            failed += 1
            rows.append(
                (
                    name.removeprefix("bench_"),
                    {"name": "FAILED", "value": "", "unit": "", "note": traceback.format_exc(limit=2).splitlines()[-1]},
                )
            )
        print(f"# {name} took {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    header = ("suite", "measure", "value", "unit", "target", "note")
    table = [header] + [
        (suite, r["name"], _fmt(r["value"]), r.get("unit", ""), r.get("target", ""), r.get("note", ""))
        for suite, r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print(
            " | ".join(
                str(c).ljust(w) if j != 2 else str(c).rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
