"""``traceaudit._threads``: work split over two cores gives what one core gives."""

from __future__ import annotations

import threading

import pytest

from traceaudit import _threads
from traceaudit._threads import Background, in_two, on_two_cores


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("count", [0, 1, 2, 7, 1000])
def test_in_two_covers_every_item_once_in_order(
    monkeypatch: pytest.MonkeyPatch, cores: int, count: int
) -> None:
    monkeypatch.setattr(_threads, "cores", lambda: cores)
    halves = in_two(lambda start, stop: list(range(start, stop)), count, minimum=2)
    assert [i for half in halves for i in half] == list(range(count))
    assert len(halves) == (2 if cores == 2 and count >= 2 else 1)


def test_in_two_runs_the_second_half_on_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_threads, "cores", lambda: 2)
    names = in_two(lambda start, stop: threading.current_thread().name, 10, minimum=1)
    assert names == [threading.current_thread().name, "traceaudit-worker"]


def test_an_error_in_either_half_is_raised_after_both_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_threads, "cores", lambda: 2)
    finished: list[int] = []

    def task(start: int, stop: int) -> None:
        if start == 0:
            raise ValueError("first half")
        finished.append(start)

    with pytest.raises(ValueError, match="first half"):
        in_two(task, 10, minimum=1)
    assert finished == [5]  # the worker's half was waited for

    def second(start: int, stop: int) -> int:
        if start:
            raise KeyError("second half")
        return 0

    with pytest.raises(KeyError, match="second half"):
        in_two(second, 10, minimum=1)


@pytest.mark.parametrize("background", [False, True])
def test_background_gives_the_result_or_the_error(background: bool) -> None:
    done = Background(lambda: 42, background=background)
    assert done.in_background is background
    assert done.result() == 42
    assert not done.in_background

    def fail() -> int:
        raise OSError("disk gone")

    failed = Background(fail, background=background)
    failed.wait()  # waiting raises nothing
    with pytest.raises(OSError, match="disk gone"):
        failed.result()


def test_cores_counts_at_least_one() -> None:
    assert _threads.cores() >= 1


@pytest.mark.parametrize("two", [False, True])
@pytest.mark.parametrize("tasks", [0, 1, 2, 5])
def test_on_two_cores_gives_every_result_in_order(two: bool, tasks: int) -> None:
    names = on_two_cores(
        [lambda i=i: (i, threading.current_thread().name) for i in range(tasks)], two=two
    )
    assert [i for i, _ in names] == list(range(tasks))
    workers = {name for _, name in names} - {threading.current_thread().name}
    assert workers == ({"traceaudit-worker"} if two and tasks >= 2 else set())
