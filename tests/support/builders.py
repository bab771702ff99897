"""Scenario builders for unit tests: a trace written as a short story.

    story = Story()
    story.open_(ms=0, pid=7, process="MsMpEng.exe", path=r"C:\\t\\a.dll", access="r", share="rwd")
    story.rename(ms=5, pid=1, process="uv.exe", path=r"C:\\t", target=r"C:\\cache\\t")
    story.close(ms=40, pid=7, path=r"C:\\t\\a.dll")
    events = story.events()

Access letters: r read data, w write data, d delete, a attributes only. Share letters:
r, w, d; "" is exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from traceaudit.schema import conform_events

START = datetime(2024, 7, 15, 11, 27, 0)

ACCESS = {"r": 0x0001, "w": 0x0002, "d": 0x00010000, "a": 0x0080 | 0x00100000}
SHARE = {"r": 1, "w": 2, "d": 4}


def access_mask(letters: str) -> int:
    mask = 0
    for letter in letters:
        mask |= ACCESS[letter]
    return mask


def share_bits(letters: str) -> int:
    bits = 0
    for letter in letters:
        bits |= SHARE[letter]
    return bits


@dataclass
class Story:
    start: datetime = START
    rows: list[dict] = field(default_factory=list)
    processes: dict[int, str] = field(default_factory=dict)

    def _add(
        self,
        ms: float,
        pid: int,
        process: str | None,
        operation: str,
        path: str,
        result: str = "SUCCESS",
        event_class: str = "File System",
        **extra,
    ) -> Story:
        if process is not None:
            self.processes[pid] = process
        self.rows.append(
            {
                "time": self.start + timedelta(microseconds=round(ms * 1000)),
                "process": self.processes.get(pid, f"p{pid}.exe"),
                "pid": pid,
                "operation": operation,
                "path": path,
                "result": result,
                "detail": "",
                "event_class": event_class,
                **extra,
            }
        )
        return self

    def open_(
        self,
        ms: float,
        pid: int,
        path: str,
        access: str = "r",
        share: str = "rwd",
        process: str | None = None,
        directory: bool | None = None,
    ) -> Story:
        return self._add(
            ms,
            pid,
            process,
            "CreateFile",
            path,
            access_mask=access_mask(access),
            share_mode=share_bits(share),
            is_directory=directory,
        )

    def close(self, ms: float, pid: int, path: str, process: str | None = None) -> Story:
        return self._add(ms, pid, process, "CloseFile", path)

    def elsewhere(self, ms: float, pid: int, process: str | None = None) -> Story:
        """The process opens and closes a file of its own elsewhere: the capture shows this
        process's CloseFiles, so a handle of it with no close was really still open."""
        path = rf"C:\elsewhere\{pid}.tmp"
        return self.open_(ms, pid, path, process=process).close(ms + 0.01, pid, path)

    def fail_open(
        self,
        ms: float,
        pid: int,
        path: str,
        access: str = "w",
        share: str = "r",
        result: str = "SHARING VIOLATION",
        process: str | None = None,
    ) -> Story:
        return self._add(
            ms,
            pid,
            process,
            "CreateFile",
            path,
            result=result,
            access_mask=access_mask(access),
            share_mode=share_bits(share),
        )

    def rename(
        self,
        ms: float,
        pid: int,
        path: str,
        target: str,
        result: str = "ACCESS DENIED",
        replace: bool = True,
        process: str | None = None,
    ) -> Story:
        return self._add(
            ms,
            pid,
            process,
            "SetRenameInformationFile",
            path,
            result=result,
            rename_target=target,
            replace_if_exists=replace,
        )

    def op(
        self,
        ms: float,
        pid: int,
        operation: str,
        path: str,
        result: str = "SUCCESS",
        process: str | None = None,
        event_class: str = "File System",
    ) -> Story:
        return self._add(ms, pid, process, operation, path, result=result, event_class=event_class)

    def events(self, *, in_time_order: bool = True) -> pl.DataFrame:
        """The story as an event frame; rows numbered in time order, or as listed."""
        frame = pl.DataFrame(self.rows)
        if in_time_order:
            frame = frame.sort("time", maintain_order=True)
        frame = frame.with_row_index("row", offset=1)
        return conform_events(frame)


# The uv scenario most tests start from: a directory rename retried with uv's backoff.
TMP = r"C:\cache\.tmpAbC123"
DLL = TMP + r"\a.dll"


def uv_with_backoff(release_ms: float) -> Story:
    """uv retries the rename at 10, 20, 40 ms … while the scanner holds a DLL below it."""
    story = Story().open_(0, 20, DLL, process="MsMpEng.exe")
    t, delay = 5.0, 10.0
    for _ in range(11):
        story.open_(t, 10, TMP, access="ad", process="uv.exe")
        result = "ACCESS DENIED" if t < release_ms else "SUCCESS"
        story.rename(t + 0.1, 10, TMP, r"C:\cache\x", result=result)
        story.close(t + 0.2, 10, TMP)
        if result == "SUCCESS":
            break
        t += delay
        delay *= 2
    story.close(release_ms, 20, DLL)
    story.op(release_ms + 1, 99, "ReadFile", r"C:\other", process="explorer.exe")
    return story
