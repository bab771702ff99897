"""The trace simulator at scale: seconds and peak memory per size, in memory and streamed.

Goal (issue "Scale"): the simulator makes traces of any size (100M events) in time linear
in size, i.e. flat seconds per million events from 1M to 10M and beyond, and the
streaming writer in bounded memory.

Each measurement runs in a fresh child process so that its peak resident memory is its
own: ``simulate_mix(n)`` (the whole trace and its truth in memory, nothing written) and
``write_mix_csv(path, n)`` (chunks of a million events appended to a Procmon CSV, no
truth; ``--truth`` writes it too, as JSON lines). The largest streamed size is 100M
events (about 25 GB of CSV) when the output directory has room for it, else 30M. The
file is deleted after the measurement.

Run: ``.venv/bin/python benchmarks/bench_simulate.py [--sizes 1e6,3e6,10e6] [--big N]
[--dir DIR] [--truth]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BYTES_PER_EVENT = 260  # Procmon CSV with the simulator's 10 columns
CHILD = r"""
import json, sys, time
try:
    import resource
except ImportError:  # Windows: no peak-RSS figure
    resource = None
from traceaudit.simulation import simulate_mix, write_mix_csv

what, n, path, truth = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
start, cpu = time.perf_counter(), time.process_time()
if what == "memory":
    sim = simulate_mix(n, seed=7)
    extra = {"conflicts": len(sim.truth["conflicts"])}
else:
    write_mix_csv(path, n, seed=7, truth_path=path + ".jsonl" if truth else None)
    extra = {"bytes": __import__("os").path.getsize(path)}
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if resource else None
print(json.dumps({"seconds": elapsed, "cpu": cpu, "peak_mb": peak, **extra}))
"""


def measure(what: str, n: int, path: Path, truth: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, what, str(n), str(path), "1" if truth else "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(label: str, n: int, result: dict) -> str:
    per_m = result["seconds"] / (n / 1e6)
    cpu_m = result["cpu"] / (n / 1e6)
    peak = f"{result['peak_mb']:,.0f}" if result["peak_mb"] else "-"
    note = f"{result['bytes'] / 1e9:.1f} GB CSV" if "bytes" in result else ""
    return (
        f"{label:<28} {n:>12,} {result['seconds']:>9.1f} {per_m:>9.2f} {cpu_m:>9.2f} "
        f"{peak:>9}  {note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,3e6,10e6", help="comma-separated event counts")
    parser.add_argument("--big", type=float, default=None, help="the largest streamed size")
    parser.add_argument("--dir", type=Path, default=None, help="where the CSVs go (temporary)")
    parser.add_argument("--truth", action="store_true", help="stream the truth too")
    parser.add_argument("--skip-memory", action="store_true", help="only the streaming writer")
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        free = shutil.disk_usage(folder).free
        big = int(args.big) if args.big else 100_000_000
        if big * BYTES_PER_EVENT * 1.1 > free:
            smaller = 30_000_000
            print(f"{free / 1e9:.0f} GB free in {folder}: streaming {smaller:,} instead of {big:,}")
            big = smaller
        print(
            f"{'what':<28} {'events':>12} {'seconds':>9} {'s per M':>9} {'CPU s/M':>9} {'peak MB':>9}"
        )
        runs = [("memory", n) for n in sizes if not args.skip_memory]
        runs += [("stream", n) for n in sizes] + [("stream", big)]
        per_million: dict[str, list[str]] = {"memory": [], "stream": []}
        for what, n in runs:
            path = folder / f"mix-{n}.csv"
            result = measure(what, n, path, args.truth)
            label = "simulate_mix (in memory)" if what == "memory" else "write_mix_csv (streamed)"
            if what == "stream" and args.truth:
                label = "write_mix_csv + truth"
            print(row(label, n, result), flush=True)
            per_million[what].append(
                f"{n / 1e6:g}M {result['seconds'] / (n / 1e6):.2f} s "
                f"({result['peak_mb'] or 0:,.0f} MB)"
            )
            for leftover in folder.glob(f"mix-{n}.csv*"):
                leftover.unlink()
    print("\nseconds per million events (peak RSS), side by side:")
    for what, cells in per_million.items():
        if cells:
            print(f"  {what:<7} " + " | ".join(cells))


if __name__ == "__main__":
    main()
