"""`make bench`: run every bench/bench_*.py module's `main()`; each prints its own figures.

Benchmarks print numbers; they never assert timings (those belong here, not in `make test`).
Run one with `python -m bench.run NAME`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main() -> None:
    wanted = set(sys.argv[1:])
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        name = path.stem[len("bench_"):]
        if wanted and name not in wanted:
            continue
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(f"bench.{path.stem}").main()


if __name__ == "__main__":
    main()
