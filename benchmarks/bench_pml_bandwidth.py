"""Benchmark: how close ``read_pml`` comes to the bandwidth of reading the same bytes.

Run ``python benchmarks/bench_pml_bandwidth.py [LOG.pml] [--repeats N]`` (default: a
~400 MB capture tiled from the corpus capture ``Tests64bit.pml.gz`` with its stacks,
``benchmarks/data/Tests64bit-880K.pml``, made by ``make_big_pml.py --events 880K`` when
missing). The file is read warm (in the page cache), alternately by

* ``numpy.fromfile``: the file's bytes into one array, nothing decoded (the ceiling);
* ``traceaudit.formats.pml.read_pml``: the whole event frame (schema columns, typed
  details, Detail text),

``N`` times each, interleaved, so that load on a shared machine hits both alike. Printed:
the median and best seconds of each, MB/s and events/s, and read_pml's share of the
``fromfile`` bandwidth (median against median; goal of issue 16: at least 30 %).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LOG = ROOT / "benchmarks" / "data" / "Tests64bit-880K.pml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", nargs="?", type=Path, default=DEFAULT_LOG)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    if not args.log.exists() and args.log == DEFAULT_LOG:
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "make_big_pml.py"), "--events", "880K"],
            check=True,
        )
    sys.path.insert(0, str(ROOT / "src"))
    from traceaudit.formats.pml.reader import read_pml

    size = args.log.stat().st_size
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    start = time.perf_counter()
    events = read_pml(args.log).events.height  # warms the page cache, imports and kernels
    cold = time.perf_counter() - start
    times: dict[str, list[float]] = {"numpy.fromfile": [], "read_pml": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        data = np.fromfile(args.log, dtype=np.uint8)
        times["numpy.fromfile"].append(time.perf_counter() - start)
        del data
        start = time.perf_counter()
        frame = read_pml(args.log).events
        times["read_pml"].append(time.perf_counter() - start)
        del frame
    print(f"{args.log.name}: {size / 1e6:,.0f} MB, {events:,} events, {args.repeats} repeats")
    print(
        f"first read {cold:.3f} s (cold: numba's import and its compiled kernels' loading "
        "included; not timed below); load average before "
        f"{' '.join(load_before)}, after {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
    )
    print(f"{'reader':<16} {'median s':>9} {'best s':>8} {'MB/s':>8} {'events/s':>12}")
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:<16} {median:>9.3f} {min(values):>8.3f} {size / 1e6 / median:>8,.0f} "
            f"{events / median:>12,.0f}"
        )
    share = statistics.median(times["numpy.fromfile"]) / statistics.median(times["read_pml"])
    best = min(times["numpy.fromfile"]) / min(times["read_pml"])
    print(f"read_pml: {share:.0%} of numpy.fromfile's bandwidth (best against best: {best:.0%})")


if __name__ == "__main__":
    main()
