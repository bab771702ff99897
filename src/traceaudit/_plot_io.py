"""Writing output files so that a reader never sees half of one.

Used by :func:`traceaudit.plot.save_all` and :func:`traceaudit.html.write_html`: the bytes
go to a temporary file in the target's directory (same volume, so the final
:func:`os.replace` is an atomic rename), flushed to disk, then moved over the target. On
any error the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def _mode_for(target: Path) -> int:
    """The permissions a plain ``open(target, "w")`` would give: the existing file's, or
    0o666 less the umask (mkstemp's own 0o600 would hide a report from its readers)."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomically(target: Path, payload: bytes) -> None:
    """Write ``payload`` to ``target`` through a temporary file beside it."""
    mode = _mode_for(target)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
