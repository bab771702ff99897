"""The Detail text of process and network events, and the assembly of the Detail column.

Thread Create/Exit and Load Image details are fixed-size numbers, rendered vectorised
(:func:`thread_and_image`). Process Create/Start/Exit carry variable strings and are few
(one or two per process), so they are read one at a time. Network events get their path
(``host:port -> host:port``, named from the file's hosts and ports tables) once per
distinct endpoint pair, and their extra ``key: value`` pairs once per distinct text
(:func:`network_texts`). :func:`render_columns` puts every group's texts in one table and
gathers the Detail column from it in one step.
"""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import polars as pl

from traceaudit.formats.pml.columns import Named
from traceaudit.formats.pml.detail import Group
from traceaudit.formats.pml.events import EventArrays, read_u32
from traceaudit.formats.pml.layout import NETWORK, NETWORK_DTYPE, PROCESS
from traceaudit.formats.pml.render import (
    EMPTY_DETAIL_OPERATIONS,
    FILE_SYSTEM_RENDERERS,
    labels,
    seconds,
)
from traceaudit.formats.pml.tables import gather_records
from traceaudit.formats.pml.text import binary_values, gather_bytes

__all__ = ["NetworkPaths", "render_columns", "thread_and_image", "process_texts", "network_texts"]

NetworkPaths = tuple[np.ndarray, pl.Series]
"""Network events' positions and their paths (``host:port -> host:port``)."""

THREAD_CREATE, THREAD_EXIT, LOAD_IMAGE = 3, 4, 5
PROCESS_CREATE, PROCESS_EXIT, PROCESS_START, PROCESS_STATISTICS = 1, 2, 7, 8
_THREAD_TIMES = np.dtype([("kernel", "<u8"), ("user", "<u8")])


def _counted_string(raw: bytes, at: int, size_word: int) -> tuple[str, int]:
    """A PML counted string (size word already read) at ``raw[at:]``; and its end."""
    chars = size_word & 0x7FFF
    if size_word >> 15:
        return raw[at : at + chars].decode("cp1252", "replace"), at + chars
    text = raw[at : at + 2 * chars].decode("utf-16-le", "replace")
    return text.split("\x00", 1)[0], at + 2 * chars


def process_texts(events: EventArrays, index: np.ndarray, after: np.ndarray) -> list[str | None]:
    """Process Create/Start/Exit details, one event at a time (they are few)."""
    data = events.data
    texts: list[str | None] = []
    for i, path_end in zip(index.tolist(), after[index].tolist(), strict=True):
        start, end = int(events.details[i]), int(events.details_end[i])
        raw = data[start:end].tobytes()
        operation = int(events.operation[i])
        try:
            if operation == PROCESS_CREATE:  # PID; the command line follows the path
                (pid,) = struct.unpack_from("<I", raw, 4)
                (size_word,) = struct.unpack_from("<H", raw, 0x30)
                command, _ = _counted_string(raw, path_end - start, size_word)
                texts.append(f"PID: {pid}, Command line: {command}")
            elif operation == PROCESS_START:
                (parent,) = struct.unpack_from("<I", raw, 0)
                if len(raw) < 12:
                    texts.append(f"Parent PID: {parent}")
                    continue
                command_word, directory_word, env_chars = struct.unpack_from("<HHI", raw, 4)
                command, cursor = _counted_string(raw, 12, command_word)
                directory, cursor = _counted_string(raw, cursor, directory_word)
                block = raw[cursor : cursor + 2 * env_chars].decode("utf-16-le", "replace")
                environment = "".join("\r;\t" + v for v in block.split("\x00") if v)
                texts.append(
                    f"Parent PID: {parent}, Command line: {command}, Current "
                    f"directory: {directory}, Environment: {environment}"
                )
            elif operation in (PROCESS_EXIT, PROCESS_STATISTICS):
                status, kernel, user, ws, peak_ws, private, peak_private = struct.unpack_from(
                    "<iQQQQQQ", raw, 0
                )
                texts.append(
                    f"Exit Status: {status}, User Time: {seconds(user)} seconds, Kernel Time: "
                    f"{seconds(kernel)} seconds, Private Bytes: {private:,}, Peak Private Bytes: "
                    f"{peak_private:,}, Working Set: {ws:,}, Peak Working Set: {peak_ws:,}"
                )
            else:
                texts.append(None)
        except struct.error:
            texts.append(None)
    return texts


def thread_and_image(events: EventArrays, index: np.ndarray) -> np.ndarray:
    """Thread Create / Thread Exit / Load Image details, vectorised."""
    operation = events.operation[index]
    details, end = events.details[index], events.details_end[index]
    pointer = events.header.pointer
    out = np.full(len(index), None, dtype=object)
    created = np.flatnonzero((operation == THREAD_CREATE) & (end >= details + 4))
    if len(created):
        out[created] = "Thread ID: " + labels(read_u32(events.data, details[created]), str)
    exited = np.flatnonzero((operation == THREAD_EXIT) & (end >= details + 20))
    if len(exited):
        times = gather_records(events.data, details[exited] + 4, _THREAD_TIMES)
        tids = events.fields["tid"][index[exited]]
        out[exited] = (
            "Thread ID: "
            + labels(tids, str)
            + ", User Time: "
            + labels(times["user"], seconds)
            + ", Kernel Time: "
            + labels(times["kernel"], seconds)
        )
    images = np.flatnonzero((operation == LOAD_IMAGE) & (end >= details + pointer + 4))
    if len(images):
        base = gather_records(events.data, details[images], np.dtype(f"<u{pointer}"))
        size = read_u32(events.data, details[images] + pointer)
        out[images] = (
            "Image Base: "
            + labels(base, lambda v: f"0x{v:x}")
            + ", Image Size: "
            + labels(size, lambda v: f"0x{v:x}")
        )
    return out


def _host(address: bytes, ipv4: bool, hosts: dict[bytes, str]) -> str:
    """A host as Procmon shows it: its name from the hosts table, else the address
    (IPv6 groups without leading zeros, as Procmon prints them)."""
    name = hosts.get(address)
    if name:
        return name.split("\x00", 1)[0]
    if ipv4:
        return str(ipaddress.IPv4Address(address[:4]))
    return ":".join(f"{int(g, 16):x}" for g in ipaddress.IPv6Address(address).exploded.split(":"))


def _pairs_text(raw: bytes) -> str:
    """The ``, key: value`` pairs of a network event (a UTF-16 multi-string)."""
    items = raw.decode("utf-16-le", "replace").split("\x00")
    text = ""
    for k in range(0, len(items) - 1, 2):
        if not items[k]:
            break
        text += f", {items[k]}: {items[k + 1]}"
    return text


def _endpoint(
    address: bytes,
    ipv4: bool,
    port: int,
    tcp: bool,
    hosts: dict[bytes, str],
    ports: dict[tuple[int, bool], str],
) -> str:
    """``host:port``, the port by its service name when the ports table has one."""
    return f"{_host(address, ipv4, hosts)}:{ports.get((port, tcp), port)}"


def network_texts(
    events: EventArrays,
    index: np.ndarray,
    hosts: dict[bytes, str],
    ports: dict[tuple[int, bool], str],
    *,
    details: bool = True,
) -> tuple[list[str], list[str | None]]:
    """Network paths (``host:port -> host:port``) and details (``Length: n, k: v…``),
    each formatted once per distinct endpoint pair and per distinct extra text (the
    details are all None with ``details=False``)."""
    begin, end = events.details[index], events.details_end[index]
    whole = np.flatnonzero(end >= begin + NETWORK_DTYPE.itemsize)
    paths = np.full(len(index), "", dtype=object)
    texts = np.full(len(index), None, dtype=object)
    if len(whole) == 0:
        return paths.tolist(), texts.tolist()
    start = begin[whole]
    records = gather_records(events.data, start, NETWORK_DTYPE)
    endpoints = np.zeros(len(records), dtype=NETWORK_DTYPE)  # the record without length
    for name in ("flags", "source_ip", "dest_ip", "source_port", "dest_port"):
        endpoints[name] = records[name]
    endpoints["flags"] &= 7
    keys = endpoints.view(np.dtype((np.void, NETWORK_DTYPE.itemsize)))
    distinct, codes = np.unique(keys, return_inverse=True)
    named = []
    for key in distinct.view(NETWORK_DTYPE):
        flags, tcp = int(key["flags"]), bool(key["flags"] & 4)
        source = _endpoint(
            bytes(key["source_ip"]), bool(flags & 1), int(key["source_port"]), tcp, hosts, ports
        )
        dest = _endpoint(
            bytes(key["dest_ip"]), bool(flags & 2), int(key["dest_port"]), tcp, hosts, ports
        )
        named.append(f"{source} -> {dest}")
    paths[whole] = np.asarray(named, dtype=object)[codes.ravel()]
    if not details:
        return paths.tolist(), texts.tolist()
    tails = binary_values(
        gather_bytes(
            events.buf, start + NETWORK_DTYPE.itemsize, end[whole] - start - NETWORK_DTYPE.itemsize
        )
    )
    pairs = {raw: _pairs_text(raw) for raw in set(tails)}
    tail_text = np.empty(len(tails), dtype=object)
    tail_text[:] = [pairs[raw] for raw in tails]
    texts[whole] = "Length: " + labels(records["length"], str) + tail_text
    return paths.tolist(), texts.tolist()


def render_columns(
    events: EventArrays,
    operations: Named,
    groups: dict[str, Group],
    after: np.ndarray,
    hosts: dict[bytes, str],
    ports: dict[tuple[int, bool], str],
    *,
    detail: bool = True,
) -> tuple[pl.Series | None, NetworkPaths | None]:
    """The Detail column, and the network events' paths (positions and texts; None when
    there are none) for the caller to put in the Path column.

    Every event's Detail is an index into one table of texts: null, "" (the operations
    Procmon leaves empty) and the texts rendered per group, so the column is built with
    a single gather. With ``detail=False`` only the network paths are made (and None is
    returned for the Detail). The Path column itself is not needed here, so it may still
    be being decoded (:mod:`.paths`).
    """
    network = np.flatnonzero(events.event_class == NETWORK)
    if not detail:
        if not len(network):
            return None, None
        paths, _ = network_texts(events, network, hosts, ports, details=False)
        return None, (network, pl.Series(paths, dtype=pl.String))
    texts: list[str | None] = [None, ""]
    empty = [name in EMPTY_DETAIL_OPERATIONS for name in operations.names]
    codes = np.asarray(empty, dtype=np.int64)[operations.codes] if empty else operations.codes

    def place(index: np.ndarray, rendered: np.ndarray | list[str | None]) -> None:
        codes[index] = np.arange(len(texts), len(texts) + len(index))
        texts.extend(rendered.tolist() if isinstance(rendered, np.ndarray) else rendered)

    for name, render in FILE_SYSTEM_RENDERERS.items():
        group = groups.get(name)
        if group is not None:
            place(group.index, render(group))
    process = np.flatnonzero(events.event_class == PROCESS)
    simple = process[np.isin(events.operation[process], (THREAD_CREATE, THREAD_EXIT, LOAD_IMAGE))]
    if len(simple):
        place(simple, thread_and_image(events, simple))
    rare = process[
        np.isin(
            events.operation[process],
            (PROCESS_CREATE, PROCESS_EXIT, PROCESS_START, PROCESS_STATISTICS),
        )
    ]
    if len(rare):
        place(rare, process_texts(events, rare, after))
    network_paths: NetworkPaths | None = None
    if len(network):
        paths, details = network_texts(events, network, hosts, ports)
        network_paths = (network, pl.Series(paths, dtype=pl.String))
        place(network, details)
    return pl.Series("detail", texts, dtype=pl.String).gather(codes), network_paths
