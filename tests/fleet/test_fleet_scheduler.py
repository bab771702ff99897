"""``traceaudit fleet --scheduler ADDRESS`` against real ``dask scheduler`` and ``dask worker``
processes on this machine (127.0.0.1), as on a cluster; both are always stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_fleet_units import damaged_csv

import traceaudit

pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 60


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT if os.name != "nt" else signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[str]:
    """A scheduler and one worker (1 process, 1 thread) in their own processes; the address."""
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "POLARS_MAX_THREADS": "1"}
    processes: list[subprocess.Popen] = []
    logs = []
    try:
        log = (tmp_path / "scheduler.log").open("wb")
        logs.append(log)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                 "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
            )
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert processes[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        log = (tmp_path / "worker.log").open("wb")
        logs.append(log)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
                 "--nthreads", "1", "--no-dashboard", "--local-directory", str(tmp_path / "w")],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
            )
        )  # fmt: skip
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)
        for log in logs:
            log.close()


def test_the_cli_runs_a_fleet_on_an_existing_cluster(scheduler: str, tmp_path: Path):
    traces = tmp_path / "traces"
    traces.mkdir()
    for family, seed in (("extract-rename", 11), ("replace-under-indexer", 12)):
        traceaudit.simulate(family, seed=seed).write_csv(traces / f"{family}.csv")
    damaged_csv(traces / "damaged.csv")
    dataset = tmp_path / "dataset"
    out = subprocess.run(
        [sys.executable, "-m", "traceaudit", "fleet", str(traces), "-o", str(dataset),
         "--scheduler", scheduler, "--json"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["traces"] == {"total": 3, "analysed": 2, "failed": 1}
    assert doc["run"]["scheduler"] == scheduler and doc["run"]["analysed"] == 2
    assert out.stderr.startswith("fleet: 3 files: 2 analysed, 1 failed in ")
    assert out.stderr.rstrip().endswith(f"on {scheduler}")
    report = traceaudit.analyze(sorted(str(p.resolve()) for p in traces.glob("*-*.csv")))
    assert doc["policy"] == json.loads(json.dumps(report.policy.to_dict()))
    assert len(list(dataset.glob("conflicts/trace_id=*/part.parquet"))) == 2
