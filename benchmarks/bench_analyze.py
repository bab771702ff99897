"""``traceaudit analyze`` on a simulated 1M-event trace: wall time and peak memory.

Goal (issue "traceaudit analyze"): under 10 s wall and under 3 GB peak memory on the
2-core reference machine, for reading the CSV and the whole analysis (handles, conflicts,
retry chains, windows, retry advice) and rendering the text and JSON reports.

Each measurement runs in a fresh child process so that its peak resident memory is its
own. Beside it, for reference in the same run: bare ``polars.read_csv`` of the same file.

Run: ``.venv/bin/python benchmarks/bench_analyze.py [--events N]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
try:
    import resource
except ImportError:  # Windows: no peak-RSS figure
    resource = None
import polars as pl
import traceaudit

path, what = sys.argv[1], sys.argv[2]
start = time.perf_counter()
if what == "polars":
    rows = pl.read_csv(path, infer_schema=False).height
    extra = {}
else:
    report = traceaudit.analyze(path)
    report.to_text(), report.to_json()
    rows = report.traces[0].events
    extra = {"conflicts": report.conflicts.height, "episodes": report.episodes.height}
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if resource else None
print(json.dumps({"rows": rows, "seconds": elapsed, "peak_mb": peak, **extra}))
"""


def measure(path: Path, what: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), what], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "simulated.csv"
        start = time.perf_counter()
        # In a child of its own: a parent that grew large would pass its peak memory on to
        # the measuring children (Linux keeps ru_maxrss across fork and exec).
        make = "import sys; from traceaudit.simulation.generate import simulate_mix; "
        make += "simulate_mix(int(sys.argv[1]), seed=int(sys.argv[2])).write_csv(sys.argv[3])"
        subprocess.run(
            [sys.executable, "-c", make, str(args.events), str(args.seed), str(path)], check=True
        )
        made = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
        print(f"simulated {args.events:,} events ({size_mb:,.0f} MB CSV) in {made:.1f} s")
        print(f"{'what':<34} {'rows':>10} {'seconds':>9} {'peak MB':>9}  notes")
        bare = measure(path, "polars")
        print(
            f"{'polars.read_csv (bare, reference)':<34} {bare['rows']:>10,} {bare['seconds']:>9.2f} {bare['peak_mb'] or 0:>9,.0f}"
        )
        full = measure(path, "analyze")
        verdict = "meets" if full["seconds"] < 10 and (full["peak_mb"] or 0) < 3000 else "MISSES"
        print(
            f"{'traceaudit.analyze (read+analyse)':<34} {full['rows']:>10,} {full['seconds']:>9.2f} "
            f"{full['peak_mb'] or 0:>9,.0f}  {full['conflicts']:,} conflicts, {full['episodes']:,} episodes; "
            f"{verdict} the goal (< 10 s, < 3,000 MB)"
        )


if __name__ == "__main__":
    main()
