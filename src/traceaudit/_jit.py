"""Compiled kernels through numba, with a pure-Python fallback where numba is missing.

A few byte-level loops (an LZ77 decoder, scans over packed string bytes) have no polars or
numpy expression that runs them at memory speed. numba compiles such a loop to machine code
at first use and caches it on disk beside the module (or in the user's cache folder when
that is read-only), so the project stays pure Python on every platform, Windows included.

``kernel(fn)`` returns the compiled function, or ``None`` when numba cannot be imported or
is switched off (``TRACEAUDIT_NO_JIT=1``, which the tests use to compare both paths). The
caller keeps the plain-Python (or numpy) version and picks one at call time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar, cast

__all__ = ["jit_available", "kernel"]

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
