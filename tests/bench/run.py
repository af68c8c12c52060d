"""Run every benchmark module (``tests/bench/bench_*.py``) and print its figures.

``make bench`` runs them all; ``make bench BENCH=store`` (or ``python -m tests.bench.run store``)
runs the named ones. Each module has ``main() -> None`` that prints its own table, always with a
baseline measured in the same run.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    """Run the benchmarks named in ``argv`` (or in $BENCH), or all of them."""
    wanted = argv or [n for n in os.environ.get("BENCH", "").split(",") if n]
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    for name in wanted or names:
        if name not in names:
            print(f"unknown benchmark {name!r}; have: {', '.join(names)}")
            return 2
        print(f"\n=== bench {name} ===", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"tests.bench.bench_{name}").main()
        print(f"=== bench {name} done in {time.perf_counter() - started:.1f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
