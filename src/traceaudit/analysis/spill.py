"""Frames kept aside while a trace streams by: in memory while small, on disk once large.

The analysis cannot know which opens and closes matter until it has seen every failure, and
failures can come at the very end of a capture. So the handle events of a big trace are
kept aside as they stream by, and filtered once the failures are known. While they are
small they stay in memory; past :data:`MEMORY_LIMIT` bytes they go to Arrow IPC files in a
private temporary folder (``TMPDIR``/``TEMP``), read back one file at a time. The folder is
removed when the store is closed (it is a context manager), also on errors and on SIGTERM,
which the CLI turns into a normal exit.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import polars as pl

__all__ = ["FrameSpill", "MEMORY_LIMIT", "detach"]

MEMORY_LIMIT = 16 * 1024 * 1024
"""Bytes of frames held in memory before they are written to disk."""


def detach(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its own copy of its strings.

    Polars strings are views into shared buffers: a few rows filtered out of a batch keep
    the whole batch's strings alive (a batch of a CSV is tens of megabytes), so the small
    frames kept from every batch of a big trace would hold on to all of it. Concatenating
    an empty string writes each value anew, into buffers of the frame's own size.
    """
    strings = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    if not strings or frame.is_empty():
        return frame
    return frame.with_columns(pl.col(name) + pl.lit("") for name in strings)


class FrameSpill:
    """An append-only store of frames of one schema, spilled to disk past ``limit`` bytes."""

    def __init__(self, limit: int = MEMORY_LIMIT) -> None:
        self.limit = limit
        self.rows = 0
        self._frames: list[pl.DataFrame] = []
        self._bytes = 0.0
        self._folder: Path | None = None
        self._files: list[Path] = []

    def add(self, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        self.rows += frame.height
        frame = detach(frame)
        self._frames.append(frame)
        self._bytes += frame.estimated_size()
        if self._bytes > self.limit:
            self._spill()

    def _spill(self) -> None:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="traceaudit-"))
        path = self._folder / f"{len(self._files):05d}.arrow"
        pl.concat(self._frames, how="vertical_relaxed").write_ipc(path, compression="lz4")
        self._files.append(path)
        self._frames, self._bytes = [], 0

    @property
    def spilled(self) -> bool:
        """Whether any frame went to disk."""
        return bool(self._files)

    def frames(self) -> Iterator[pl.DataFrame]:
        """Every frame stored, in the order added (from disk, then from memory)."""
        for path in self._files:
            # Read from bytes, never memory-mapped: Windows cannot delete a mapped file.
            yield pl.read_ipc(io.BytesIO(path.read_bytes()))
        yield from self._frames

    def select(self, keep: Callable[[pl.DataFrame], pl.DataFrame]) -> list[pl.DataFrame]:
        """``keep`` applied to every stored frame: what it leaves, in order."""
        return [detach(kept) for frame in self.frames() if (kept := keep(frame)).height]

    def close(self) -> None:
        """Forget the frames and remove the files."""
        self._frames, self._bytes = [], 0
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder, self._files = None, []

    def __enter__(self) -> FrameSpill:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if self._folder is not None and os.path.isdir(self._folder):
            self.close()
