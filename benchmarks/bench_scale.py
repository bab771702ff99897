"""``traceaudit analyze`` at 1M, 10M and 100M events, CSV and PML: seconds and peak memory.

Goals (issue "Scale"): 10M events under 1.5 GB peak and at most 1.5x the 1M peak; a
100M-event PML (~10+ GB) under 4 GB peak; time per event at 10M no worse than at 1M.

Inputs, made once into ``benchmarks/data/`` (git-ignored) and reused:

* CSV: :func:`traceaudit.simulation.write_mix_csv` (the simulator's mixed trace, about
  250 bytes an event, lock conflicts all along: a quarter of the events belong to
  scenarios, and the analysis keeps about 12 % of them, so its memory grows with size);
* CSV "sparse": the same with 1 % of the events in scenarios, nearer a real capture,
  where failures are rare: what memory does when it follows the failures;
* PML: ``make_big_pml.py --strip-stacks`` tiles the corpus capture
  ``procmon-pairs/Tests64bit.pml.gz`` (53,214 real events) to the size asked for.

Each measurement runs in a fresh child process so that its peak resident memory is its
own: ``traceaudit.analyze(path)`` (the streamed pass), then the text report and the JSON
document streamed to a null sink, as ``traceaudit analyze --json > file`` does. Side by
side, the reference: the whole trace read into memory first (``load_trace`` then
``analyze``), which is how every analysis ran before; it is skipped past ``--whole-max``
events (100M events whole would need some 60 GB).

Run: ``.venv/bin/python benchmarks/bench_scale.py [--sizes 1M,10M,100M] [--formats csv,sparse,pml]
[--whole-max 10M]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
GOAL_10M_MB = 1_500
GOAL_100M_PML_MB = 4_000

CHILD = r"""
import json, sys, time
try:
    import resource
except ImportError:  # Windows: no peak-RSS figure
    resource = None
import traceaudit

path, how = sys.argv[1], sys.argv[2]
start = time.perf_counter()
if how == "whole":
    from traceaudit.formats import load_trace
    report = traceaudit.analyze(load_trace(path))
else:
    report = traceaudit.analyze(path)
report.to_text()
size = 0
def sink(text):
    global size
    size += len(text)
report.write_json(sink)
elapsed = time.perf_counter() - start
def peak_mb():
    # VmHWM: this process's own peak (ru_maxrss can carry a large parent's, see
    # tests/support/fuzz_worker.py); ru_maxrss elsewhere (bytes on macOS), none on Windows
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    if resource is None:
        return None
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
peak = peak_mb()
print(json.dumps({
    "events": report.traces[0].events, "seconds": elapsed, "peak_mb": peak,
    "conflicts": report.conflicts.height, "kept": report.events.height, "json_mb": size / 1e6,
}))
"""


def parse_count(text: str) -> int:
    text = text.strip().upper()
    factor = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KM")) * factor)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n:,}"


SPARSE_SHARE = 0.01


def csv_input(n: int, share: float | None = None) -> Path:
    name = "simulated-mix" if share is None else "simulated-sparse"
    path = DATA / f"{name}-{label(n)}.csv"
    if not path.exists():
        partial = path.with_suffix(".partial")
        make = (
            "import sys; from traceaudit.simulation import write_mix_csv; "
            "share = {} if sys.argv[3] == 'default' else {'scenario_share': float(sys.argv[3])}; "
            "write_mix_csv(sys.argv[1], int(sys.argv[2]), seed=7, **share)"
        )
        started = time.perf_counter()
        how = "default" if share is None else str(share)
        subprocess.run([sys.executable, "-c", make, str(partial), str(n), how], check=True)
        os.replace(partial, path)
        print(f"  made {path.name} in {time.perf_counter() - started:,.0f} s", flush=True)
    return path


def pml_input(n: int) -> Path:
    path = DATA / f"Tests64bit-nostack-{label(n)}.pml"
    if not path.exists():
        script = ROOT / "benchmarks" / "make_big_pml.py"
        command = [sys.executable, str(script), "--events", str(n), "--strip-stacks"]
        subprocess.run([*command, "--out", str(path)], check=True)
    return path


def measure(path: Path, how: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), how], capture_output=True, text=True
    )
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(fmt: str, n: int, path: Path, how: str, result: dict) -> str:
    size = f"{path.stat().st_size / 1e9:,.2f}"
    if "error" in result:
        return f"{fmt:<6} {label(n):>5} {size:>7}  {how:<8} {result['error']}"
    per_event = result["seconds"] / max(result["events"], 1) * 1e6
    return (
        f"{fmt:<6} {label(n):>5} {size:>7}  {how:<8} {result['seconds']:>8,.1f} "
        f"{per_event:>8.2f} {result['peak_mb'] or 0:>8,.0f} {result['kept']:>11,} "
        f"{result['conflicts']:>9,} {result['json_mb']:>8,.1f}"
    )


def verdicts(fmt: str, results: dict[int, dict]) -> list[str]:
    """The issue's goals, checked against this run's streamed figures."""
    out = []
    one, ten, hundred = (results.get(n) for n in (1_000_000, 10_000_000, 100_000_000))
    if ten and "peak_mb" in ten:
        ok = ten["peak_mb"] < GOAL_10M_MB
        out.append(f"{fmt} 10M peak {ten['peak_mb']:,.0f} MB < {GOAL_10M_MB:,} MB: {_yes(ok)}")
        if one and "peak_mb" in one:
            ratio = ten["peak_mb"] / one["peak_mb"]
            out.append(f"{fmt} 10M peak / 1M peak = {ratio:.2f} <= 1.5: {_yes(ratio <= 1.5)}")
            per = [r["seconds"] / r["events"] * 1e6 for r in (one, ten)]
            out.append(
                f"{fmt} time per event 10M {per[1]:.2f} us vs 1M {per[0]:.2f} us: "
                f"{_yes(per[1] <= per[0])}"
            )
    if fmt == "pml" and hundred and "peak_mb" in hundred:
        ok = hundred["peak_mb"] < GOAL_100M_PML_MB
        out.append(
            f"pml 100M peak {hundred['peak_mb']:,.0f} MB < {GOAL_100M_PML_MB:,} MB: {_yes(ok)}"
        )
    return out


def load() -> str:
    average = getattr(os, "getloadavg", None)  # not on Windows
    return f"{average()[0]:.1f}" if average else "n/a"


def _yes(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M,100M")
    parser.add_argument("--formats", default="csv,sparse,pml", help="csv, sparse, pml")
    parser.add_argument("--whole-max", default="10M", help="largest size read whole too")
    args = parser.parse_args()
    sizes = [parse_count(s) for s in args.sizes.split(",")]
    formats = args.formats.split(",")
    whole_max = parse_count(args.whole_max)
    DATA.mkdir(parents=True, exist_ok=True)
    print(f"cores {os.cpu_count()}, load average {load()} at start")
    print(
        f"{'fmt':<6} {'events':>5} {'GB':>7}  {'how':<8} {'seconds':>8} {'us/event':>8} "
        f"{'peak MB':>8} {'kept':>11} {'conflicts':>9} {'JSON MB':>8}"
    )
    notes: list[str] = []
    for fmt in formats:
        streamed: dict[int, dict] = {}
        for n in sizes:
            path = (
                csv_input(n)
                if fmt == "csv"
                else csv_input(n, SPARSE_SHARE)
                if fmt == "sparse"
                else pml_input(n)
            )
            streamed[n] = measure(path, "streamed")
            print(row(fmt, n, path, "streamed", streamed[n]), flush=True)
            if n <= whole_max:
                print(row(fmt, n, path, "whole", measure(path, "whole")), flush=True)
        notes += verdicts(fmt, streamed)
    print(f"load average {load()} at the end")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
