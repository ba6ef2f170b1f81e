from __future__ import annotations

import importlib
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


def main(argv: list[str]) -> int:
    only = set(argv[1:])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmweb.settings")
    import benchmarks

    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    rows: list[tuple[str, dict]] = []
    failed = 0
    for name in names:
        if only and name not in only and name.removeprefix("bench_") not in only:
            continue
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
            for row in mod.run():
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
