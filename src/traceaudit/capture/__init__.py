"""Before a trace: how to record one the analysis can answer from.

``procmon_config`` writes Process Monitor configurations (``.pmc``); ``guide`` holds what
``traceaudit capture-profile`` prints. The ETW recording setups (WPR, xperf, logman) live
beside their reader, in :mod:`traceaudit.formats.etl.profile`.
"""

from __future__ import annotations

from traceaudit.capture.guide import OVERVIEW, procmon_steps
from traceaudit.capture.procmon_config import (
    DEFAULT_OUTPUT,
    ProcmonConfig,
    folder_config,
    procmon_folder,
    write_procmon_config,
)

__all__ = [
    "DEFAULT_OUTPUT",
    "OVERVIEW",
    "ProcmonConfig",
    "folder_config",
    "procmon_folder",
    "procmon_steps",
    "write_procmon_config",
]
