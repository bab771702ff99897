"""The analysis, frame in, frame out: from events to conflicts, episodes and advice.

    events ─► handles ─► completeness ─► conflicts (+ blockers, candidates, sections)
           ─► retry chains ─► hold times, lock episodes and their blocked times

:mod:`traceaudit.pipeline` wires the stages, the retry advice and the Report together
(:func:`analyze`, also importable from here); each stage is a module of its own:
``handles`` (handle lifetimes), ``completeness`` (what the capture can show),
``conflicts`` (failures, blockers and verdicts), ``sections`` (mapped sections),
``retries`` (retry chains), ``episodes`` (lock episodes and blocked times),
``hold_times`` (the hold-time table), ``timeline`` (one path's events), ``clock``
(showing UTC traces on a local clock), and ``rules``: the Windows rules they rest on
(paths, share modes, statuses) in one place.
"""

from traceaudit._lazy import attach

__all__ = ["analyze", "analyze_trace", "diagnose"]

__getattr__, __dir__ = attach(
    __name__,
    {
        "analyze": "traceaudit.pipeline",
        "analyze_trace": "traceaudit.pipeline",
        "diagnose": "traceaudit.pipeline",
    },
)
