"""The compiled LZ77 Xpress decoder and record walk against their pure-Python twins.

Where numba is available (not ``TRACEAUDIT_NO_JIT=1``) the ETL reader expands buffers with
a numba kernel and walks records with another; the pure-Python decoder and walk stay the
reference. Both must give the same bytes, the same records and the same error messages
on any input: compressed data from the test suite's own compressor, that data damaged,
and random bytes. Without numba the comparisons that need it are skipped.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from builders import Story
from etl_writer import compress, write_etl
from traceaudit.formats.etl.buffers import Damage, iter_chunks
from traceaudit.formats.etl.reader import read_etl
from traceaudit.formats.etl.xpress import (
    XpressError,
    compiled_decoder,
    decompress,
    decompress_kernel,
    decompress_python,
)

needs_jit = pytest.mark.skipif(compiled_decoder() is None, reason="numba missing or switched off")

# Data that compresses: literal runs and repeats of every length class (3-9 in the match
# word, up to 24 in the half byte, up to 279 in the extra byte, then 16-bit lengths).
_PIECES = st.one_of(
    st.binary(max_size=24),
    st.tuples(st.binary(min_size=1, max_size=5), st.integers(1, 700)).map(lambda t: t[0] * t[1]),
)
COMPRESSIBLE = st.lists(_PIECES, max_size=12).map(b"".join)


def outcome(decoder, body: bytes, size: int) -> bytes | str:
    """The bytes a decoder gives, or its error message."""
    try:
        return decoder(body, size)
    except XpressError as exc:
        return f"XpressError: {exc}"


@needs_jit
@settings(max_examples=150, deadline=None)
@given(COMPRESSIBLE)
@example(bytes(70_000))  # a 32-bit match length
@example(b"abcabcabcabc" * 30 + bytes(range(256)) * 3)
def test_kernel_expands_compressed_data_as_the_python_decoder(data):
    packed = compress(data)
    assert decompress_kernel(packed, len(data)) == decompress_python(packed, len(data)) == data


@needs_jit
@settings(max_examples=200, deadline=None)
@given(
    COMPRESSIBLE,
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    st.integers(0, 10**6),
    st.integers(-50, 50),
)
def test_kernel_and_python_agree_on_damaged_data(data, flips, cut, extra):
    """Bytes changed, the end cut off, the announced size off by a little: the same bytes
    or the same error message from both."""
    packed = bytearray(compress(data))
    for at, value in flips:
        if packed:
            packed[at % len(packed)] = value
    body = bytes(packed[: len(packed) - cut % (len(packed) + 1)]) if cut % 3 == 0 else bytes(packed)
    size = max(0, len(data) + extra)
    assert outcome(decompress_kernel, body, size) == outcome(decompress_python, body, size)


@needs_jit
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=5000))
@example(b"\xff\xff\xff\xff\x08\x00", 100)  # a match before any output
@example(b"\xff\xff\xff\xff", 10)  # a match flag with no data left
@example(struct.pack("<I", 0x80000000) + b"\x07", 50)  # a match word cut in half
def test_kernel_and_python_agree_on_random_bytes(body, size):
    assert outcome(decompress_kernel, body, size) == outcome(decompress_python, body, size)


@needs_jit
def test_kernel_does_not_expand_a_hostile_length():
    """A 2 GiB match length gives the 100 bytes asked for (the copy is capped)."""
    flags = (1 << 30) | ((1 << 30) - 1)
    body = struct.pack("<I", flags) + b"a" + struct.pack("<HBBHI", 7, 15, 255, 0, 0x7FFFFFF0)
    assert decompress_kernel(body, 100) == b"a" * 100
    short = struct.pack("<I", flags) + b"a" + struct.pack("<HBBH", 7, 15, 255, 5)
    assert outcome(decompress_kernel, short, 100) == "XpressError: match length 5 below 22"


def test_decompress_picks_a_decoder_that_gives_the_python_result():
    data = b"the quick brown fox " * 200
    assert decompress(compress(data), len(data)) == data
    with pytest.raises(XpressError, match="expands to"):
        decompress(compress(data), len(data) + 10)


def story_file(tmp_path, **options):
    story = Story()
    for i in range(300):
        story.open_(ms=i, pid=3, process="a.exe", path=rf"C:\data\file{i % 7}.txt")
        story.close(ms=i + 0.5, pid=3, process="a.exe", path=rf"C:\data\file{i % 7}.txt")
    return write_etl(story.events(), tmp_path / "trace.etl", **options)


def chunks(data: bytes, kernels: bool) -> tuple[list[tuple[list[int], ...]], Damage]:
    damage = Damage()
    found = [
        (
            chunk.positions.tolist(),
            chunk.sizes.tolist(),
            chunk.header_types.tolist(),
            chunk.rows.tolist(),
            [
                chunk.data[p : p + s].tobytes()
                for p, s in zip(chunk.positions, chunk.sizes, strict=True)
            ],
        )
        for chunk in iter_chunks("t.etl", data, damage, chunk_bytes=100_000, kernels=kernels)
    ]
    return found, damage


@needs_jit
@pytest.mark.parametrize("compressed", [False, True])
def test_compiled_walk_finds_the_records_and_damage_the_python_walk_finds(tmp_path, compressed):
    """Bytes overwritten in every buffer body: the same records, rows, bytes and damage
    messages (in the same order) from the compiled reading of a chunk's bodies (expanded
    and walked in one call) and the Python one (buffer by buffer)."""
    data = bytearray(story_file(tmp_path, compressed=compressed).read_bytes())
    rng = np.random.default_rng(7)
    offset = struct.unpack_from("<I", data, 0)[0]  # the first event buffer
    while offset + 0x48 < len(data):
        size = struct.unpack_from("<I", data, offset)[0]
        filled = struct.unpack_from("<I", data, offset + 0x30)[0]
        end = offset + (size if compressed else filled)
        for at in rng.integers(offset + 0x48, end, 6).tolist():
            data[at] = int(rng.integers(0, 256))
        offset += size
    compiled, compiled_damage = chunks(bytes(data), kernels=True)
    python, python_damage = chunks(bytes(data), kernels=False)
    assert compiled == python
    assert compiled_damage == python_damage
    assert compiled_damage.buffers > 0
    if compressed:
        assert any("does not decompress" in w for w in compiled_damage.where)
    else:
        assert any("record at body offset" in w for w in compiled_damage.where)


def test_a_compressed_buffer_larger_than_etw_allows_is_damaged(tmp_path):
    """FilledBytes above ETW's 16 MiB maximum: the buffer is skipped before anything is
    allocated for it, the other buffers are read."""
    path = story_file(tmp_path, compressed=True)
    data = bytearray(path.read_bytes())
    first = struct.unpack_from("<I", data, 0)[0]
    struct.pack_into("<I", data, first + 0x30, 0x7FFF0000)
    path.write_bytes(bytes(data))
    trace = read_etl(path)
    assert trace.skipped == {"damaged buffer": 1}
    assert (
        f"buffer at 0x{first:X}: compressed, 2,147,418,112 bytes filled, more than ETW's "
        "largest buffer (16,777,216 bytes)" in trace.warnings[0]
    )
    assert trace.events.height > 0
