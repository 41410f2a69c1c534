"""`make bench`: run every benchmarks/bench_*.py (or those named) and write their docs/bench-*.md.

Usage: python -m benchmarks.run [NAME ...]     e.g.  python -m benchmarks.run baselines pruning distillation

Every benchmarks/bench_NAME.py is found by its file name (bench_distillation.py is `distillation`).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    names = argv if argv is not None else sys.argv[1:]
    found = sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    unknown = [n for n in names if n not in found]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {found}", file=sys.stderr)
        return 2
    for name in names or found:
        print(f"\n##### benchmark {name} #####", flush=True)
        t0 = time.perf_counter()
        importlib.import_module(f"benchmarks.bench_{name}").main()
        print(f"##### {name} took {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
