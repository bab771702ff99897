"""Start-up cost: ``traceaudit --version`` and ``import traceaudit`` beside ``import polars``.

Goal (issue "The house"): ``traceaudit --version`` faster than ``python -c "import polars"``,
and ``import traceaudit`` loading no pyarrow, matplotlib or pandas until used. Each command
runs as a fresh process several times; the table shows the minimum and median wall time.

Run: ``.venv/bin/python benchmarks/bench_startup.py [--runs N]``
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _time(command: list[str], runs: int) -> tuple[float, float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return min(seconds), statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    python = sys.executable
    script = shutil.which("traceaudit", path=str(Path(python).parent)) or "traceaudit"
    commands = {
        'python -c "import polars" (reference)': [python, "-c", "import polars"],
        "traceaudit --version": [script, "--version"],
        'python -c "import traceaudit"': [python, "-c", "import traceaudit"],
        'python -c "import traceaudit; traceaudit.analyze"': [
            python,
            "-c",
            "import traceaudit; traceaudit.analyze",
        ],
    }
    print(f"{'command':<52} {'min s':>8} {'median s':>9}")
    for label, command in commands.items():
        low, mid = _time(command, runs)
        print(f"{label:<52} {low:>8.3f} {mid:>9.3f}")


if __name__ == "__main__":
    main()
