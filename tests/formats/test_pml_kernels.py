"""The PML reader's compiled passes (numba) against its numpy path: the same frames.

Every capture of the corpus, and the synthetic captures of the other PML reader tests
(through :func:`read_both_ways`, which their modules install as an autouse fixture), is
read once with the kernels of :mod:`traceaudit.formats.pml.kernels` and once with them
switched off; frames, warnings, skipped counts and errors must be identical. Under
``TRACEAUDIT_NO_JIT=1`` both reads take the numpy path (and still must agree).
"""

from __future__ import annotations

import functools
import gzip
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_series_equal

from same import assert_same_trace
from traceaudit.formats.pml import kernels
from traceaudit.formats.pml.reader import read_pml
from traceaudit.formats.pml.text import decode_strings
from traceaudit.schema import Trace


def read_both_ways(read: Callable[..., Any]) -> Callable[..., Any]:
    """``read`` done with the kernels and again without them: the result of the first,
    after checking that the second gives the same trace (or raises the same error)."""

    @functools.wraps(read)
    def both(*args: Any, **kwargs: Any) -> Any:
        try:
            compiled = read(*args, **kwargs)
        except Exception as error:
            with kernels.switched_off(), pytest.raises(type(error)) as again:
                read(*args, **kwargs)
            assert str(again.value) == str(error)
            raise
        with kernels.switched_off():
            fallback = read(*args, **kwargs)
        if isinstance(compiled, Trace):
            assert_same_trace(compiled, fallback)
        return compiled

    return both


@pytest.fixture
def both_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make the requesting module's ``read_pml`` (and ``read``) read both ways."""
    module = request.module
    for name in ("read_pml", "read"):
        real = getattr(module, name, None)
        if real is not None and getattr(real, "__module__", "") == "traceaudit.formats.pml.reader":
            monkeypatch.setattr(module, name, read_both_ways(real))
    yield


def test_the_kernels_compile_here() -> None:
    """numba is a dependency: the compiled path is the one the tests exercise (unless
    switched off on purpose)."""
    import os

    if os.environ.get("TRACEAUDIT_NO_JIT", "") not in ("", "0"):
        assert kernels.compiled() is None
    else:
        assert kernels.compiled() is not None
        with kernels.switched_off():
            assert kernels.compiled() is None


def _corpus_logs(corpus: Path) -> list[Path]:
    return sorted((corpus / "procmon-pml").glob("*.pml")) + sorted(
        (corpus / "procmon-pairs").glob("*.pml.gz")
    )


def test_every_corpus_capture_reads_the_same_both_ways(corpus: Path, tmp_path: Path) -> None:
    logs = _corpus_logs(corpus)
    assert logs
    for log in logs:
        path = log
        if log.suffix == ".gz":  # read from a plain file: the memory-mapped path
            path = tmp_path / log.name.removesuffix(".gz")
            with gzip.open(log) as source, path.open("wb") as target:
                shutil.copyfileobj(source, target)
        read_both_ways(read_pml)(path)
        read_both_ways(read_pml)(log)  # and from memory (decompressed content)


# --- strings ------------------------------------------------------------------------

_UNITS = st.one_of(
    st.integers(0x20, 0x7E),
    st.sampled_from([0, 0x7F, 0x80, 0xE9, 0x7FF, 0x800, 0x20AC, 0xFFFD, 0xFFFF]),
    st.integers(0xD800, 0xDFFF),  # surrogates, paired or not
    st.integers(0, 0xFFFF),
)
_BYTES = st.one_of(st.integers(0x20, 0x7E), st.sampled_from([0, 0x80, 0x81, 0x9D, 0xE9, 0xFF]))
_STRING = st.one_of(
    st.tuples(st.just(False), st.lists(_UNITS, max_size=40)),
    st.tuples(st.just(True), st.lists(_BYTES, max_size=40)),
)


def _expected(one_byte: bool, raw: bytes) -> str:
    text = raw.decode("cp1252" if one_byte else "utf-16-le", "replace")
    return text.split("\x00", 1)[0]


def _layout(strings: list[tuple[bool, list[int]]], gap: int) -> tuple[bytes, list[int]]:
    blob = bytearray(b"\xaa" * gap)
    starts = []
    for one_byte, values in strings:
        starts.append(len(blob))
        if one_byte:
            blob += bytes(values)
        else:
            blob += b"".join(v.to_bytes(2, "little") for v in values)
        blob += b"\xaa" * gap
    return bytes(blob), starts


@settings(max_examples=300, deadline=None)
@given(strings=st.lists(_STRING, max_size=30), gap=st.integers(0, 9))
def test_strings_decode_as_python_decodes_them_each(
    strings: list[tuple[bool, list[int]]], gap: int
) -> None:
    """UTF-16 (with unpaired surrogates) and cp1252 strings, cut at a NUL, packed close
    together or right at the end of the buffer: both paths give Python's decoding."""
    blob, starts = _layout(strings, gap)
    buf = pa.py_buffer(blob)
    chars = np.array([len(v) for _, v in strings], dtype=np.int64)
    one_byte = np.array([b for b, _ in strings], dtype=bool)
    begin = np.array(starts, dtype=np.int64)
    expected = [
        _expected(b, blob[s : s + (n if b else 2 * n)])
        for (b, _), s, n in zip(strings, starts, chars.tolist(), strict=True)
    ]
    compiled = decode_strings(buf, begin, chars, one_byte)
    with kernels.switched_off():
        fallback = decode_strings(buf, begin, chars, one_byte)
    assert compiled.to_list() == expected
    assert_series_equal(compiled, fallback, check_names=False)


def test_many_non_ascii_strings_overflow_the_first_buffer() -> None:
    """A part's buffer is sized for ASCII first: 3-byte characters go to a second."""
    text = "€" * 20
    raw = text.encode("utf-16-le")
    blob = raw * 1000
    starts = np.arange(0, len(blob), len(raw), dtype=np.int64)
    chars = np.full(len(starts), len(text), dtype=np.int64)
    series = decode_strings(pa.py_buffer(blob), starts, chars)
    assert series.to_list() == [text] * 1000
    with kernels.switched_off():
        assert_series_equal(series, decode_strings(pa.py_buffer(blob), starts, chars))
