"""Simulated Process Monitor traces with ground truth, for tests, samples and benchmarks.

``generate`` is the entry point (:func:`simulate`, :func:`simulate_mix`, and
:func:`write_mix_csv` for traces too large to hold in memory); ``story`` builds
events and the handle model behind them, ``families`` holds one story per scenario family,
``noise`` the background activity, and ``truth`` the independent ground-truth engine.
"""

from traceaudit._lazy import attach

__all__ = [
    "DEFAULT_DATE",
    "EventRows",
    "FAMILY_NAMES",
    "RetrySchedule",
    "Simulation",
    "SimulationBug",
    "simulate",
    "simulate_mix",
    "write_mix_csv",
]

__getattr__, __dir__ = attach(
    __name__,
    {
        "simulate": "traceaudit.simulation.generate",
        "simulate_mix": "traceaudit.simulation.generate",
        "write_mix_csv": "traceaudit.simulation.generate",
        "FAMILY_NAMES": "traceaudit.simulation.generate",
        "DEFAULT_DATE": "traceaudit.simulation.generate",
        "EventRows": "traceaudit.simulation.generate",
        "RetrySchedule": "traceaudit.simulation.generate",
        "Simulation": "traceaudit.simulation.generate",
        "SimulationBug": "traceaudit.errors",
    },
)
