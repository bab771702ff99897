"""Open a trace file: undo gzip/zip wrapping and give readers its bytes.

Compression is recognised by content (magic bytes), never by extension, so a ``.csv``
that is really gzip still reads. A zip is opened at its single member, or at its single
member that looks like a trace (see :func:`open_input`). Plain files are not read into
memory here: readers that can hand a path to a fast native parser (polars) do so, and
only the first :data:`HEAD_SIZE` bytes are read for sniffing.
"""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from traceaudit.errors import TraceFormatError, UnknownFormatError

__all__ = ["HEAD_SIZE", "TraceInput", "open_input", "input_from_bytes"]

HEAD_SIZE = 64 * 1024
"""Bytes read from the start of the content to sniff its format."""

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


@dataclass
class TraceInput:
    """The content of one trace, as readers see it.

    ``name`` is what messages start with (``trace.csv``, or ``logs.zip/Logfile.txt`` for
    a zip member). ``path`` is set only when the content is the plain, uncompressed file
    on disk, so a reader may pass it to a native parser instead of the bytes.
    """

    name: str
    source: Path | None
    head: bytes
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    _data: bytes | None = None
    _loader: Callable[[], bytes] | None = None

    def read_bytes(self) -> bytes:
        """The whole (decompressed) content; read once and kept."""
        if self._data is None:
            assert self._loader is not None
            self._data = self._loader()
        return self._data


def input_from_bytes(data: bytes, name: str, source: Path | None = None) -> TraceInput:
    """Wrap content already in memory (pasted text, a decompressed member)."""
    return TraceInput(name=name, source=source, head=data[:HEAD_SIZE], _data=data)


def open_input(
    path: str | os.PathLike[str], sniff: Callable[[bytes], bool] | None = None
) -> TraceInput:
    """Open ``path`` and undo gzip or zip wrapping.

    ``sniff`` tells trace content from other content; it picks the member of a zip that
    holds several files. Raises :class:`UnknownFormatError` for an archive without a
    usable member and :class:`TraceFormatError` for a file that cannot be opened.
    """
    source = Path(path)
    name = source.name
    if source.is_dir():
        raise TraceFormatError(f"{name}: is a folder, not a trace file. Give a file.")
    try:
        with source.open("rb") as handle:
            head = handle.read(HEAD_SIZE)
    except FileNotFoundError:
        raise TraceFormatError(f"{name}: no such file ({source}). Check the path.") from None
    except OSError as exc:
        raise TraceFormatError(
            f"{name}: cannot open the file ({exc.strerror or exc}). Check the path and permissions."
        ) from None
    if head.startswith(_GZIP_MAGIC):
        return _open_gzip(source)
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        return _open_zip(source, sniff)
    return TraceInput(name=name, source=source, head=head, path=source, _loader=source.read_bytes)


def _open_gzip(source: Path) -> TraceInput:
    try:
        data = gzip.decompress(source.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise TraceFormatError(
            f"{source.name}: damaged gzip file ({exc}). Compress the trace again or give "
            "the uncompressed file."
        ) from None
    return input_from_bytes(data, source.name, source)


def _open_zip(source: Path, sniff: Callable[[bytes], bool] | None) -> TraceInput:
    try:
        with zipfile.ZipFile(source) as archive:
            members = [
                info
                for info in archive.infolist()
                if not info.is_dir() and not info.filename.startswith("__MACOSX/")
            ]
            if not members:
                raise UnknownFormatError(
                    f"{source.name}: not a trace traceaudit can read (looks like an empty "
                    "zip archive). Put the exported trace in the archive, or give it "
                    "directly."
                )
            chosen = members[0]
            warnings: list[str] = []
            if len(members) > 1 and sniff is not None:
                traces = [m for m in members if sniff(_member_head(archive, m))]
                if traces:
                    chosen = traces[0]
                    if len(traces) > 1:
                        others = ", ".join(m.filename for m in traces[1:])
                        warnings.append(
                            f"{source.name}: holds {len(traces)} traces; read "
                            f"{chosen.filename} only (not {others}). Extract the others "
                            "to read them."
                        )
            data = archive.read(chosen)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise TraceFormatError(
            f"{source.name}: damaged or unsupported zip archive ({exc}). Extract the trace "
            "and give it directly."
        ) from None
    trace_input = input_from_bytes(data, f"{source.name}/{chosen.filename}", source)
    trace_input.warnings.extend(warnings)
    return trace_input


def _member_head(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    with archive.open(info) as member:
        return member.read(HEAD_SIZE)
