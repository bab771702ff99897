"""Writing output files so that a reader never sees half of one.

Every file traceaudit writes (reports, figures, converted and redacted traces, simulated
traces) goes through here: the bytes go to a temporary file in the target's directory (the
same volume, so the final :func:`os.replace` is an atomic rename, on Windows too), are
flushed to disk, then moved over the target. On any error the temporary file is removed and
the target is left as it was, and an error while writing (a full disk) names the target,
not the temporary file. The CLI turns SIGTERM into a normal exit, so a killed run removes
its temporary files too.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_output", "write_atomically"]


def _create_temp(target: Path) -> tuple[int, Path]:
    """A new, empty temporary file next to ``target``: (descriptor, path).

    Created with mode 0o666 so the process umask applies as for any new file
    (``tempfile.mkstemp`` would leave the final file readable by its owner only).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {target}")


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``path`` only once the ``with`` block succeeds.

    The data goes to a temporary file in the same directory (so the final
    :func:`os.replace` is an atomic rename on the same volume); on error the temporary
    file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    fd, tmp = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        # Name the file the user asked for, not the temporary one beside it.
        raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomically(target: str | os.PathLike[str], payload: bytes) -> None:
    """Write ``payload`` to ``target`` through a temporary file beside it."""
    with atomic_output(target) as handle:
        handle.write(payload)
