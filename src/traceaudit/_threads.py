"""Work on a second core: the readers' compiled passes release the GIL, so a big read
can run two of them at once.

The machines our users read traces on have several cores, but a reader is one Python
thread: the numba kernels (:mod:`traceaudit._jit`) release the GIL, so a pass over the
second half of the events, or a pass nothing else waits for, can run on a worker thread
while the caller goes on. Small inputs stay on one thread: starting a thread and handing
the GIL back and forth costs more than it saves there.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Background", "cores", "in_two", "on_two_cores"]

T = TypeVar("T")


def cores() -> int:
    """The cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)  # not on Windows or macOS
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


class Background(Generic[T]):
    """``work()`` run on a worker thread (``background``) or at once; :meth:`result`
    gives what it returned, or raises what it raised."""

    def __init__(self, work: Callable[[], T], *, background: bool) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._done = False
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._run, args=(work,), name="traceaudit-worker", daemon=True
            )
            self._thread.start()
        else:
            self._run(work)

    def _run(self, work: Callable[[], T]) -> None:
        try:
            self._value = work()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc
        self._done = True

    @property
    def in_background(self) -> bool:
        """Whether a worker thread does (or did) the work and is not yet waited for."""
        return self._thread is not None

    def wait(self) -> None:
        """Wait until the work is done, whatever its outcome (nothing is raised)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def result(self) -> T:
        """What the work returned (waits for it); raises what it raised."""
        self.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        assert self._done
        return self._value  # type: ignore[return-value]


def on_two_cores(tasks: Sequence[Callable[[], T]], *, two: bool) -> list[T]:
    """Run ``tasks`` and give their results in order: the second half of them on a
    worker thread when ``two`` (and there are two tasks or more), else one by one here.
    An error in either half is raised once both halves have stopped."""
    if not two or len(tasks) < 2:
        return [task() for task in tasks]
    half = len(tasks) // 2
    later = Background(lambda: [task() for task in tasks[half:]], background=True)
    try:
        first = [task() for task in tasks[:half]]
    except BaseException:
        later.wait()
        raise
    return first + later.result()


def in_two(task: Callable[[int, int], T], count: int, *, minimum: int) -> list[T]:
    """``task(start, stop)`` over ``range(count)``: in two halves at once, the second on a
    worker thread, when there are at least ``minimum`` items and a second core; else in
    one call. The results are in order (one or two of them)."""
    if count < minimum or cores() < 2:
        return [task(0, count)]
    middle = count // 2
    return on_two_cores([lambda: task(0, middle), lambda: task(middle, count)], two=True)
