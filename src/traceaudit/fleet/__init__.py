"""A fleet of traces on Dask distributed: thousands of captures into one Parquet dataset.

::

    summary = traceaudit.fleet(["traces/"], "fleet-dataset", workers=8)
    summary.holders            # which processes blocked how many operations on how many machines
    summary.policy             # the retry policy learned from the whole fleet
    print(summary.to_text())

    discovery.py   which files: files, folders (recursively, sniffed), globs
    task.py        one trace in, its tables out: a plain function, run by the workers
    driver.py      the Dask driver (LocalCluster or an existing scheduler): fleet()
    dataset.py     the Hive-partitioned Parquet dataset: atomic writer, readers
    summary.py     the pooled summary: holders, blocked and hold times, policy, replay

Dask is imported only when :func:`fleet` runs. This package is itself callable
(``traceaudit.fleet(...)`` works whether ``traceaudit.fleet`` is bound to the function or,
once a submodule has been imported, to this package).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from traceaudit._lazy import attach

_LAZY: dict[str, str | tuple[str, str | None]] = {
    "fleet": ("traceaudit.fleet.driver", "fleet"),
    "FleetSummary": ("traceaudit.fleet.summary", "FleetSummary"),
    "FleetRun": ("traceaudit.fleet.summary", "FleetRun"),
    "summarize": ("traceaudit.fleet.summary", "summarize"),
    "analyse_file": ("traceaudit.fleet.task", "analyse_file"),
    "TraceResult": ("traceaudit.fleet.task", "TraceResult"),
    "discover": ("traceaudit.fleet.discovery", "discover"),
    "read_table": ("traceaudit.fleet.dataset", "read_table"),
    "scan_table": ("traceaudit.fleet.dataset", "scan_table"),
}

__all__ = [
    "FleetRun",
    "FleetSummary",
    "TraceResult",
    "analyse_file",
    "discover",
    "fleet",
    "read_table",
    "scan_table",
    "summarize",
]

__getattr__, __dir__ = attach(__name__, _LAZY)


class _CallableModule(types.ModuleType):
    """``traceaudit.fleet(...)`` on the package calls :func:`traceaudit.fleet.driver.fleet`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from traceaudit.fleet.driver import fleet

        return fleet(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


if TYPE_CHECKING:  # pragma: no cover
    from traceaudit.fleet.dataset import read_table, scan_table
    from traceaudit.fleet.discovery import discover
    from traceaudit.fleet.driver import fleet
    from traceaudit.fleet.summary import FleetRun, FleetSummary, summarize
    from traceaudit.fleet.task import TraceResult, analyse_file
