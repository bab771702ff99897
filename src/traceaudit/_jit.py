"""Compiled kernels through numba, with a pure-Python fallback where numba is missing.

A few byte-level loops (an LZ77 decoder, scans over packed string bytes) have no polars or
numpy expression that runs them at memory speed. numba compiles such a loop to machine code
at first use and caches it on disk beside the module (or in the user's cache folder when
that is read-only), so the project stays pure Python on every platform, Windows included.

``kernel(fn)`` returns the compiled function, or ``None`` when numba cannot be imported or
is switched off (``TRACEAUDIT_NO_JIT=1``, which the tests use to compare both paths). The
caller keeps the plain-Python (or numpy) version and picks one at call time.

**When they pay off.** Importing numba and loading a reader's kernels from its cache costs
about 0.3-0.5 s once per process. ETL's LZ77 decoder wins that back on any real trace (the
Python decoder is ten times slower), but the PML and CSV kernels save only about 0.2 ms per
MB over their numpy and polars paths: a one-shot command reading a trace of a few hundred
MB would be slower with them. So the command line reads small PML and CSV inputs on the
plain paths (:func:`plain_paths`, see :func:`pays_off`), and a long-lived process (a
notebook, a fleet worker), which pays the cost once, uses the kernels throughout.
``TRACEAUDIT_JIT=1`` makes the command line use them on any input.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar, cast

__all__ = ["PAYS_OFF_BYTES", "jit_available", "kernel", "pays_off", "plain", "plain_paths"]

PAYS_OFF_BYTES = 512 * 2**20
"""Bytes of PML or CSV input (decompressed) from which a one-shot command reads faster with
the kernels than without, their loading included (measured: about 0.2 ms saved per MB
against 0.3-0.5 s of loading; rounded down, since a bigger trace is also where speed
matters)."""

_PLAIN: list[bool] = []

F = TypeVar("F", bound=Callable[..., Any])


@cache
def jit_available() -> bool:
    """Whether numba imports here and the user has not switched it off."""
    if os.environ.get("TRACEAUDIT_NO_JIT", "") not in ("", "0"):
        return False
    try:
        import numba  # noqa: F401
    except Exception:  # an import error, or a numba/numpy version mismatch at import
        return False
    return True


def kernel(fn: F, *, parallel: bool = False, inline: bool = False) -> F | None:
    """``fn`` compiled with numba (no Python objects, GIL released, cached), or ``None``.

    ``inline``: a small helper that other kernels call, inlined into each of them
    (numba's ``inline="always"``; a call that is not inlined can cost more than the
    helper's work).
    """
    if not jit_available():
        return None
    import numba

    options: dict[str, Any] = {"cache": True, "nogil": True, "parallel": parallel}
    if inline:
        options["inline"] = "always"
    return cast(F, numba.njit(**options)(fn))


def pays_off(input_bytes: int) -> bool:
    """Whether a one-shot command reading ``input_bytes`` of PML or CSV should load the
    kernels (always with ``TRACEAUDIT_JIT=1``)."""
    if os.environ.get("TRACEAUDIT_JIT", "") not in ("", "0"):
        return True
    return input_bytes >= PAYS_OFF_BYTES


@contextmanager
def plain_paths(on: bool = True) -> Iterator[None]:
    """Within this block (when ``on``), the PML and CSV readers take their numpy and polars
    paths and leave numba unloaded; ETL's decoder keeps its kernel."""
    if not on:
        yield
        return
    _PLAIN.append(True)
    try:
        yield
    finally:
        _PLAIN.pop()


def plain() -> bool:
    """Whether the PML and CSV readers are inside :func:`plain_paths`."""
    return bool(_PLAIN)
