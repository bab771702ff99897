"""The scenario families of :mod:`traceaudit.simulation.generate`, one story function each.

Every story appends its events to a :class:`~traceaudit.simulation.story.TraceBuilder`,
starting near ``t0``, and returns a :class:`Story`: the parameters it actually used
(random choices resolved, so the truth file records them). Stories
decide whether an attempt fails from the handles they modelled (``Handle.open_at``) and
tell the builder which handles they expect to block each failure; the truth engine then
recomputes the blockers by the contract rules and checks that both agree.

Paths are unique per trace (random ``.tmpXXXXXX`` names, numbered project folders), so
many stories can share one trace (``simulate_mix``) without touching each other's files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from traceaudit.formats.procmon_text.csv_write import (
    format_detail_attribute_tag,
    format_detail_disposition,
    format_detail_mapping,
    format_detail_query_basic,
    format_detail_query_name,
    format_detail_query_standard,
    format_detail_size,
)
from traceaudit.simulation.story import (
    NANOID_ALPHABET,
    Handle,
    Proc,
    RetrySchedule,
    TraceBuilder,
    access_mask,
    ms,
    share_bits,
    us,
)
from traceaudit.simulation.truth import shares_conflict

__all__ = ["FAMILIES", "Story", "UV_RETRY", "EDITOR_RETRY", "COPY_RETRY", "USERS"]

UV_RETRY = RetrySchedule(initial_ms=10, factor=2, max_retries=10)
"""uv's rename retry (backon: 10 ms, ×2, 10 retries, no jitter; 10.23 s in all)."""
EDITOR_RETRY = RetrySchedule(
    initial_ms=10, factor=1, increment_ms=10, cap_ms=100, max_retries=None, budget_ms=60_000
)
"""VS Code's rename retry: +10 ms steps capped at 100 ms, for up to 60 s."""
COPY_RETRY = RetrySchedule(initial_ms=1000, factor=1, max_retries=10)
"""MSBuild's Copy task: 10 retries, 1 s apart."""
USER_RETRY = RetrySchedule(initial_ms=1500, factor=1.6, max_retries=4)
"""A person clicking Save again, a little slower each time."""

USERS = ("alice", "bob", "jdoe", "mkoch", "priya", "wchen", "username", "svc-build")
PACKAGES: dict[str, tuple[str, ...]] = {
    "conan-2.5.0": ("conan", "conans"),
    "numpy-1.26.4": ("numpy",),
    "scipy-1.13.1": ("scipy",),
    "pandas-2.2.2": ("pandas",),
    "grpcio-1.64.1": ("grpc",),
    "cryptography-42.0.8": ("cryptography",),
    "pyarrow-16.1.0": ("pyarrow",),
    "lxml-5.2.2": ("lxml",),
}
SCANNERS = ("MsMpEng.exe", "MsMpEng.exe", "MsMpEng.exe", "mcshield.exe", "CSFalconService.exe")
_SUBDIRS = ("", "core", "_internal", "api", "cli\\commands", "tools", "utils", "io", "tests")
_WORDS = (
    "base", "cache", "compat", "config", "download", "errors", "graph", "layout", "model",
    "profile", "remote", "search", "settings", "types", "util", "version", "packager",
    "toolchain", "loader", "parser", "writer", "reader", "client", "helpers", "constants",
    "exceptions", "registry", "manifest", "hooks", "install", "upload", "lockfile",
)  # fmt: skip
_PROJECTS = ("notes", "thesis", "website", "budget", "api-spec", "meeting-notes", "todo")
_SYNCED = (
    ("budget", "xlsx"), ("expenses", "xlsx"), ("cv", "docx"), ("slides", "pptx"),
    ("photo", "jpg"), ("notes", "txt"), ("travel", "pdf"), ("contacts", "csv"),
)  # fmt: skip
_SHARE_ALL = ("Read", "Write", "Delete")
_FILE_OPTS = ("Synchronous IO Non-Alert", "Non-Directory File")
_WINSOCK = "HKLM\\System\\CurrentControlSet\\Services\\WinSock2\\Parameters"


@dataclass(frozen=True)
class Story:
    """What a story did: its resolved parameters, its user, and, for a capture filtered
    to one process, that process (background noise then comes from it alone)."""

    params: dict[str, Any]
    user: str
    filtered_to: Proc | None = None


# ---------------------------------------------------------------------------- small steps


def _gap(b: TraceBuilder, lo_us: float = 15, hi_us: float = 120) -> int:
    return us(b.rng.uniform(lo_us, hi_us))


def _pick_user(b: TraceBuilder, user: str | None) -> str:
    return user if user is not None else b.choice(USERS)


def make_dir(b: TraceBuilder, proc: Proc, path: str, t: int, tid: int | None = None) -> int:
    """mkdir as Procmon shows it: CreateFile (Create, Directory) then CloseFile."""
    h = b.open(
        t, proc, path, ("Read Data/List Directory", "Synchronize"), ("Read", "Write"),
        disposition="Create", options=("Directory", "Synchronous IO Non-Alert", "Open Reparse Point"),
        open_result="Created", attributes="N", allocation_size=0, tid=tid,
    )  # fmt: skip
    t += _gap(b, 60, 300)
    b.close(t, h, tid=tid)
    return t + _gap(b)


def _query_name(b: TraceBuilder, proc: Proc, path: str, t: int, tid: int | None) -> int:
    """The BUFFER OVERFLOW then SUCCESS pair of QueryNameInformationFile (informational)."""
    name = path[2:]
    cut = name.rfind("\\", 0, max(len(name) // 2, 1))
    short = f"C:{name[: cut if cut > 0 else len(name) // 2]}"
    for result, name in (("BUFFER OVERFLOW", short), ("SUCCESS", path)):
        detail = format_detail_query_name(name)
        b.emit(t, proc, "QueryNameInformationFile", path, result, detail, tid=tid)
        t += _gap(b, 20, 80)
    return t


def write_new_file(
    b: TraceBuilder,
    proc: Proc,
    path: str,
    size: int,
    t: int,
    *,
    tid: int | None = None,
    share: Sequence[str] = _SHARE_ALL,
    disposition: str = "Create",
    open_result: str = "Created",
    query_name: float = 0.3,
) -> tuple[Handle, int]:
    """CreateFile (Generic Write) → WriteFile chunks → CloseFile; returns (handle, close time)."""
    h = b.open(
        t, proc, path, ("Generic Write", "Read Attributes"), share, disposition=disposition,
        options=(*_FILE_OPTS, "Open Reparse Point"), open_result=open_result,
        allocation_size=0, tid=tid,
    )  # fmt: skip
    t += _gap(b, 30, 200)
    if b.rng.random() < query_name:
        t = _query_name(b, proc, path, t, tid)
    chunk = max(8192, math.ceil(size / 4 / 8192) * 8192)
    for offset in range(0, max(size, 1), chunk):
        length = min(chunk, size - offset) if size else 0
        if offset and b.rng.random() < 0.3:
            b.readwrite(t, h, "WriteFile", offset, length, result="FAST IO DISALLOWED", tid=tid)
            t += _gap(b, 5, 30)
        b.readwrite(t, h, "WriteFile", offset, length, tid=tid)
        t += us(20 + length / 400)  # ~400 MB/s
    t += _gap(b, 10, 60)
    b.close(t, h, tid=tid)
    return h, t


def _read_file(
    b: TraceBuilder, proc: Proc, path: str, t_open: int, t_close: int, *,
    share: Sequence[str] = ("Read", "Write"), tid: int | None = None, size: int = 4096,
) -> Handle:  # fmt: skip
    """An ordinary read: CreateFile Generic Read, one ReadFile, CloseFile at ``t_close``."""
    h = b.open(t_open, proc, path, ("Generic Read",), share, tid=tid)
    b.readwrite(t_open + _gap(b, 20, 90), h, "ReadFile", 0, size, tid=tid)
    b.close(t_close, h, tid=tid)
    return h


def registry_denied(b: TraceBuilder, proc: Proc, t: int) -> None:
    """A registry ACCESS DENIED: a decoy, because the registry is not the file system."""
    b.emit(t, proc, "RegOpenKey", _WINSOCK, "ACCESS DENIED", "Desired Access: All Access")
    b.emit(t + _gap(b, 5, 40), proc, "RegOpenKey", _WINSOCK, "SUCCESS", "Desired Access: Read")
    b.emit(t + _gap(b, 60, 200), proc, "RegCloseKey", _WINSOCK, "SUCCESS", "")


def explorer_elsewhere(b: TraceBuilder, user: str, t_open: int, t_close: int) -> Handle:
    """explorer.exe reading an unrelated file while the conflict happens (a decoy)."""
    name = b.token(16, "0123456789abcdef")
    path = (
        f"C:\\Users\\{user}\\AppData\\Roaming\\Microsoft\\Windows\\Recent\\"
        f"AutomaticDestinations\\{name}.automaticDestinations-ms"
    )
    return _read_file(b, b.shared("explorer.exe"), path, t_open, t_close, size=512)


def retry_loop(
    t_first: int, schedule: RetrySchedule, attempt: Callable[[int], tuple[int, bool]]
) -> tuple[int, int, bool]:
    """Run ``attempt(t) -> (t_after, ok)`` with the schedule's delays; (end, attempts, ok)."""
    delays = schedule.delays_ms()
    t, n = t_first, 0
    while True:
        t_after, ok = attempt(t)
        n += 1
        if ok or n > len(delays):
            return t_after, n, ok
        t = t_after + ms(delays[n - 1])


# ---------------------------------------------------------------------------- extract-rename


def _package_files(b: TraceBuilder, package: str, n_files: int) -> list[tuple[str, int, bool]]:
    """(relative path, size, is_binary) of the files of a package; the last is a binary."""
    tops = PACKAGES.get(package, (package.split("-")[0].replace("-", "_"),))
    files: list[tuple[str, int, bool]] = []
    seen: set[str] = set()
    rng = b.rng
    while len(files) < n_files:
        top = b.choice(tops)
        binary = len(files) == n_files - 1 or rng.random() < 0.12
        if binary and rng.random() < 0.35:
            rel = f"{top}.libs\\lib{b.choice(_WORDS)}-{b.token(8, '0123456789abcdef')}.dll"
            size = int(min(max(rng.lognormal(math.log(3e6), 1.0), 1e5), 4e7))
        elif binary:
            sub = b.choice(_SUBDIRS)
            rel = "\\".join(p for p in (top, sub, f"_{b.choice(_WORDS)}.cp312-win_amd64.pyd") if p)
            size = int(min(max(rng.lognormal(math.log(4e5), 1.0), 2e4), 2e7))
        else:
            sub = b.choice(_SUBDIRS)
            rel = "\\".join(p for p in (top, sub, f"{b.choice(_WORDS)}.py") if p)
            size = int(min(max(rng.lognormal(math.log(5e3), 1.0), 200), 2e5))
        if rel.lower() not in seen:
            seen.add(rel.lower())
            files.append((rel, size, binary))
    return files


@dataclass
class _ScanJob:
    ready: int
    path: str
    size: int
    binary: bool


def _scan_file(
    b: TraceBuilder, scanner: Proc, tid: int, job: _ScanJob, start: int, lock_ns: int
) -> Handle:
    """One scanner pass over a file: open (Generic Read, share all), look, read, close."""
    h = b.open(start, scanner, job.path, ("Generic Read",), _SHARE_ALL, tid=tid)
    t = start + _gap(b, 20, 80)
    alloc = -(-job.size // 4096) * 4096
    b.emit(
        t,
        scanner,
        "QueryStandardInformationFile",
        job.path,
        detail=format_detail_query_standard(alloc, job.size),
        tid=tid,
    )
    if job.binary:
        t += _gap(b, 10, 40)
        b.emit(t, scanner, "CreateFileMapping", job.path, "FILE LOCKED WITH ONLY READERS",
               format_detail_mapping("PAGE_READONLY"), tid=tid)  # fmt: skip
        t += _gap(b, 5, 20)
        b.emit(
            t, scanner, "CreateFileMapping", job.path, detail=format_detail_mapping(None), tid=tid
        )
    t += _gap(b, 10, 60)
    b.readwrite(t, h, "ReadFile", 0, min(job.size, 65536), tid=tid)
    b.close(start + lock_ns, h, tid=tid)
    return h


def _scan_queue(
    b: TraceBuilder,
    scanner: Proc,
    jobs: list[_ScanJob],
    threads: int,
    median_ms: float,
    sigma: float,
) -> list[Handle]:
    """The scanner works through files as their writer closes them, ``threads`` at a time."""
    free = [0] * threads
    handles = []
    for job in sorted(jobs, key=lambda j: j.ready):
        k = min(range(threads), key=free.__getitem__)
        start = max(free[k], job.ready) + _gap(b, 50, 400)
        scale = (2.5 if job.binary else 1.0) * (1 + job.size / 8e6)
        lock = min(
            max(b.lognormal_ms(median_ms * scale, sigma), 15.0 if job.binary else 2.0), 30_000.0
        )
        handles.append(_scan_file(b, scanner, scanner.tids[k], job, start, ms(lock)))
        free[k] = start + ms(lock) + _gap(b, 20, 200)
    return handles


def extract_rename(
    b: TraceBuilder,
    t0: int,
    *,
    user: str | None = None,
    package: str | None = None,
    n_files: int = 24,
    scanner: str | None = None,
    scanner_threads: int = 2,
    scan_fraction: float = 0.5,
    lock_median_ms: float = 40.0,
    lock_sigma: float = 1.1,
    retry: RetrySchedule | dict[str, Any] | None = None,
    sibling_decoy: bool = True,
    prefix_decoy: bool = True,
    explorer_decoy: bool = True,
) -> Story:
    """uv extracts a package into ``cache\\.tmpXXXXXX\\<pkg>`` and renames it into the cache.

    A scanner opens freshly written files (Generic Read, share Read/Write/Delete) and
    holds each for a lognormal time; the directory rename fails with ACCESS DENIED while
    any scanner handle below the directory is open and is retried by ``retry`` (uv's
    10 ms ×2, 10 retries by default). Decoys: scans that ended before the failure, a
    scan in a sibling ``.tmpYYYYYY`` directory and of ``<pkg>.tar.gz`` (a path that
    starts with the directory's name but is not below it), explorer.exe reading
    elsewhere, and a registry ACCESS DENIED.
    """
    if n_files < 1 or scanner_threads < 1:
        raise ValueError("n_files and scanner_threads must be at least 1")
    user = _pick_user(b, user)
    package = package if package is not None else b.choice(list(PACKAGES))
    scanner = scanner if scanner is not None else b.choice(SCANNERS)
    schedule = RetrySchedule.coerce(retry, UV_RETRY)
    uv = b.spawn("uv.exe", threads=3)
    av = b.shared(scanner, threads=max(8, scanner_threads + 3))
    cache = f"C:\\Users\\{user}\\AppData\\Local\\uv\\cache"
    tmp = f"{cache}\\.tmp{b.token(6)}"
    pkg_dir = f"{tmp}\\{package}"
    archive_dir = f"{cache}\\archive-v0"
    target = f"{archive_dir}\\{b.token(21, NANOID_ALPHABET)}"

    t, archive_close, jobs = _extract_package(
        b, uv, t0, tmp, package, n_files, scan_fraction, prefix_decoy
    )
    scans = _scan_queue(b, av, jobs, scanner_threads, lock_median_ms, lock_sigma)

    t_first = t + ms(b.rng.uniform(1, 6))
    if sibling_decoy:
        _sibling_scan(b, uv, av, av.tids[-1], cache, t0, t_first)
    if prefix_decoy and archive_close is not None:
        _archive_scan(b, av, f"{tmp}\\{package}.tar.gz", archive_close, t_first)
    if explorer_decoy:
        explorer_elsewhere(
            b, user, t_first - ms(b.rng.uniform(5, 60)), t_first + ms(b.rng.uniform(5, 90))
        )

    attempt = partial(_rename_attempt, b, uv, uv.tids[1], pkg_dir, archive_dir, target, scans, t0)
    retry_loop(t_first, schedule, attempt)
    return Story(
        {
            "user": user, "package": package, "n_files": n_files, "scanner": scanner,
            "scanner_threads": scanner_threads, "scan_fraction": scan_fraction,
            "lock_median_ms": lock_median_ms, "lock_sigma": lock_sigma,
            "retry": schedule.to_dict(), "sibling_decoy": sibling_decoy,
            "prefix_decoy": prefix_decoy, "explorer_decoy": explorer_decoy,
        },
        user,
    )  # fmt: skip


def _extract_package(
    b: TraceBuilder,
    uv: Proc,
    t0: int,
    tmp: str,
    package: str,
    n_files: int,
    scan_fraction: float,
    prefix_decoy: bool,
) -> tuple[int, int | None, list[_ScanJob]]:
    """uv's extraction before the rename: a registry refusal (decoy), ``tmp``, the
    ``<pkg>.tar.gz`` prefix decoy, then ``tmp\\<pkg>`` with every file and subdirectory.

    Returns (time uv is done, when the archive was closed or None, the files the scanner
    will look at: every binary, and other files with probability ``scan_fraction``).
    """
    registry_denied(b, uv, t0 - ms(b.rng.uniform(20, 200)))
    t = make_dir(b, uv, tmp, t0)
    archive_close = None
    if prefix_decoy:
        _, archive_close = write_new_file(
            b, uv, f"{tmp}\\{package}.tar.gz", int(b.rng.uniform(2e5, 3e6)), t
        )
        t = archive_close + _gap(b, 200, 900)
    pkg_dir = f"{tmp}\\{package}"
    t = make_dir(b, uv, pkg_dir, t)
    created_dirs = {pkg_dir.lower()}
    jobs: list[_ScanJob] = []
    for rel, size, binary in _package_files(b, package, n_files):
        path = f"{pkg_dir}\\{rel}"
        parts = rel.split("\\")[:-1]
        for depth in range(1, len(parts) + 1):
            sub = "\\".join([pkg_dir, *parts[:depth]])
            if sub.lower() not in created_dirs:
                created_dirs.add(sub.lower())
                t = make_dir(b, uv, sub, t)
        _, closed = write_new_file(b, uv, path, size, t)
        if binary or b.rng.random() < scan_fraction:
            jobs.append(_ScanJob(closed + _gap(b, 80, 600), path, size, binary))
        t = closed + ms(b.rng.uniform(0.3, 4))
    return t, archive_close, jobs


def _archive_scan(
    b: TraceBuilder, av: Proc, archive: str, archive_close: int, t_first: int
) -> None:
    """The prefix decoy: the scanner holds ``<pkg>.tar.gz`` across the first attempt, a path
    that starts with the directory's name but is not below it."""
    job = _ScanJob(archive_close, archive, 0, False)
    start = archive_close + _gap(b, 100, 600)
    _scan_file(b, av, av.tids[-2], job, start, t_first + ms(b.rng.uniform(5, 400)) - start)


def _rename_attempt(
    b: TraceBuilder,
    uv: Proc,
    tid: int,
    pkg_dir: str,
    archive_dir: str,
    target: str,
    scans: list[Handle],
    created: int,
    t: int,
) -> tuple[int, bool]:
    """One try of uv's rename of ``pkg_dir`` to ``target``: open the directory and its new
    parent, query, rename (ACCESS DENIED while a scan below it is open), close both.

    Returns (time after the last close, whether the rename succeeded), as
    :func:`retry_loop` expects.
    """
    h_dir = b.open(
        t, uv, pkg_dir, ("Read Attributes", "Delete", "Synchronize"), _SHARE_ALL,
        options=("Synchronous IO Non-Alert", "Open Reparse Point"), tid=tid,
    )  # fmt: skip
    t += _gap(b, 60, 150)
    b.emit(
        t,
        uv,
        "QueryAttributeTagFile",
        pkg_dir,
        detail=format_detail_attribute_tag("D"),
        tid=tid,
    )
    t += _gap(b, 10, 40)
    b.emit(t, uv, "QueryBasicInformationFile", pkg_dir,
           detail=format_detail_query_basic(created, t, t, t, "D"), tid=tid)  # fmt: skip
    t += _gap(b, 40, 120)
    h_parent = b.open(
        t, uv, archive_dir, ("Append Data/Add Subdirectory/Create Pipe Instance", "Synchronize"),
        ("Read", "Write"), options=(), tid=tid,
    )  # fmt: skip
    t = b.avoid(t + _gap(b, 100, 250), scans)
    blockers = [h for h in scans if h.open_at(t)]
    result = "ACCESS DENIED" if blockers else "SUCCESS"
    b.rename(t, uv, pkg_dir, target, replace=True, result=result, is_dir=True,
             target_exists=False, expect=blockers, tid=tid)  # fmt: skip
    t += _gap(b, 150, 400)
    b.close(t, h_parent, tid=tid)
    t += _gap(b, 40, 120)
    b.close(t, h_dir, tid=tid)
    return t, not blockers


def _sibling_scan(
    b: TraceBuilder, uv: Proc, av: Proc, tid: int, cache: str, t0: int, t_first: int
) -> None:
    """A concurrent extraction in another ``.tmpYYYYYY`` whose file the scanner holds
    across the first rename attempt: open during the failure, but not below the dir."""
    tmp = f"{cache}\\.tmp{b.token(6)}"
    other = b.choice([p for p in PACKAGES])
    top = PACKAGES[other][0]
    uv_tid = uv.tids[2]
    t = make_dir(b, uv, tmp, t0 + ms(b.rng.uniform(0.5, 3)), tid=uv_tid)
    t = make_dir(b, uv, f"{tmp}\\{other}", t, tid=uv_tid)
    t = make_dir(b, uv, f"{tmp}\\{other}\\{top}", t, tid=uv_tid)
    path = f"{tmp}\\{other}\\{top}\\_{b.choice(_WORDS)}.cp312-win_amd64.pyd"
    size = int(b.rng.uniform(1e5, 2e6))
    _, closed = write_new_file(b, uv, path, size, t, tid=uv_tid)
    start = max(closed + _gap(b, 100, 500), t_first - ms(b.rng.uniform(20, 250)))
    job = _ScanJob(closed, path, size, True)
    _scan_file(b, av, tid, job, start, t_first + ms(b.lognormal_ms(150, 0.8)) - start)


# ---------------------------------------------------------------------------- replace-under-indexer


def replace_under_indexer(
    b: TraceBuilder,
    t0: int,
    *,
    user: str | None = None,
    mode: str = "rename",
    filename: str = "file.txt",
    project: str | None = None,
    hold_median_ms: float = 250.0,
    hold_sigma: float = 1.0,
    retry: RetrySchedule | dict[str, Any] | None = None,
    av_decoy: bool = True,
    reader_decoy: bool = True,
    case_variant: bool = False,
) -> Story:
    """An editor saves ``file.txt`` while the search indexer reads it.

    ``mode="rename"``: Code.exe writes ``file.txt.tmp`` and renames it over ``file.txt``
    (ReplaceIfExists: True): ACCESS DENIED while SearchProtocolHost.exe holds file.txt
    (Generic Read, ShareMode: Read, Write). ``mode="write"``: Code.exe opens file.txt for
    Generic Write with ShareMode: None; ``mode="delete"``: it opens file.txt for Delete
    (then deletes it and renames the .tmp into place); both fail with SHARING VIOLATION.
    Retries follow ``retry`` (VS Code's linear 10 ms steps, capped at 100 ms, 60 s).
    Decoys: MsMpEng.exe scanned and closed before; explorer.exe holds an attribute-only
    handle (Read Attributes, share all) across the failures (on the .tmp source in
    rename mode, on file.txt otherwise); with ``case_variant`` the indexer spells the
    path in upper case (still the same file).
    """
    if mode not in ("rename", "write", "delete"):
        raise ValueError(f"mode must be 'rename', 'write' or 'delete', not {mode!r}")
    user = _pick_user(b, user)
    project = b.unique(project if project is not None else b.choice(_PROJECTS))
    schedule = RetrySchedule.coerce(retry, EDITOR_RETRY)
    code = b.spawn("Code.exe", threads=4)
    folder = f"C:\\Users\\{user}\\Documents\\{project}"
    target = f"{folder}\\{filename}"
    tmp = f"{target}.tmp"

    size = int(b.rng.uniform(300, 40_000))
    t = t0
    if mode != "write":
        _, t = write_new_file(
            b, code, tmp, size, t0, share=("Read", "Write"), disposition="OverwriteIf", query_name=0
        )
    t_first = t + ms(b.rng.uniform(1, 5))
    handles: list[Handle] = []
    if av_decoy:
        start = t + _gap(b, 200, 900)
        av_close = start + ms(b.rng.uniform(3, 20))
        subject = tmp if mode == "rename" else target
        av = b.shared("MsMpEng.exe", threads=8)
        handles.append(
            _read_file(b, av, subject, start, av_close, share=_SHARE_ALL, size=min(size, 65536))
        )
        t_first = max(t_first, av_close + ms(b.rng.uniform(0.3, 3)))
    held = _indexer_hold(
        b, target.upper() if case_variant else target, t_first, size, hold_median_ms, hold_sigma
    )
    handles.append(held)
    if reader_decoy:
        assert held.close_ns is not None
        subject, exists_from = (tmp, t) if mode == "rename" else (target, t0)
        handles.append(_attribute_reader(b, subject, exists_from, t_first, held.close_ns))
    relevant = [h for h in handles if h.path.lower() == target.lower()]
    retry_loop(t_first, schedule, _save_attempt(b, code, mode, tmp, target, relevant))
    return Story(
        {
            "user": user, "mode": mode, "filename": filename, "project": project,
            "hold_median_ms": hold_median_ms, "hold_sigma": hold_sigma,
            "retry": schedule.to_dict(), "av_decoy": av_decoy, "reader_decoy": reader_decoy,
            "case_variant": case_variant,
        },
        user,
    )  # fmt: skip


def _indexer_hold(
    b: TraceBuilder, path: str, t_first: int, size: int, median_ms: float, sigma: float
) -> Handle:
    """SearchProtocolHost.exe holds ``path`` (Generic Read, share Read, Write) across
    ``t_first`` and closes it at least 30 ms later."""
    indexer = b.shared("SearchProtocolHost.exe", threads=3)
    t_open = t_first - ms(b.rng.uniform(10, 400))
    t_close = t_first + ms(max(b.lognormal_ms(median_ms, sigma), 30.0))
    held = b.open(
        t_open,
        indexer,
        path,
        ("Generic Read",),
        ("Read", "Write"),
        options=(*_FILE_OPTS, "Open Requiring Oplock"),
    )
    b.emit(t_open + _gap(b, 10, 40), indexer, "FileSystemControl", path, "OPLOCK HANDLE CLOSED",
           "Control: FSCTL_REQUEST_OPLOCK")  # fmt: skip
    b.readwrite(t_open + _gap(b, 60, 200), held, "ReadFile", 0, min(size, 65536))
    b.close(t_close, held)
    return held


def _attribute_reader(
    b: TraceBuilder, path: str, exists_from: int, t_first: int, before: int
) -> Handle:
    """explorer.exe with an attribute-only handle (never conflicts) on ``path`` open across
    ``t_first``, opened after the file exists (``exists_from``) and closed before ``before``."""
    t0 = exists_from
    t_open = max(t_first - ms(b.rng.uniform(1, 50)), exists_from + us(b.rng.uniform(100, 500)))
    t_close = min(t_first + ms(b.rng.uniform(1, 20)), before - ms(1))
    reader = b.open(
        t_open,
        b.shared("explorer.exe"),
        path,
        ("Read Attributes",),
        _SHARE_ALL,
        options=("Open Reparse Point",),
    )
    b.emit(t_open + _gap(b, 10, 50), reader.proc, "QueryBasicInformationFile", path,
           detail=format_detail_query_basic(t0, t_open, t0, t0, "A"))  # fmt: skip
    b.close(t_close, reader)
    return reader


def _save_attempt(
    b: TraceBuilder, code: Proc, mode: str, tmp: str, target: str, relevant: list[Handle]
) -> Callable[[int], tuple[int, bool]]:
    """One save attempt of the editor in ``mode``, as a :func:`retry_loop` callback.

    ``relevant`` are the modelled handles on file.txt: a rename over it is blocked by
    any of them that is open; a write/delete open by those whose sharing refuses it.
    """
    tid = code.tids[1]
    delete_access = ("Read Attributes", "Delete", "Synchronize")
    dir_opts = ("Synchronous IO Non-Alert", "Open Reparse Point")
    access: tuple[str, ...]
    share: tuple[str, ...]
    options: tuple[str, ...]
    if mode == "write":
        access, share, options, disposition = (
            ("Generic Write", "Read Attributes"),
            (),
            _FILE_OPTS,
            "OverwriteIf",
        )
    else:
        access, share, options, disposition = delete_access, _SHARE_ALL, dir_opts, "Open"
    mask, bits = access_mask(access), share_bits(share)

    def rename_over(t: int, target_exists: bool) -> tuple[int, bool]:
        h = b.open(t, code, tmp, delete_access, _SHARE_ALL, options=dir_opts, tid=tid)
        t = b.avoid(t + _gap(b, 40, 150), relevant)
        blockers = [x for x in relevant if target_exists and x.open_at(t)]
        result = "ACCESS DENIED" if blockers else "SUCCESS"
        b.rename(t, code, tmp, target, replace=True, result=result, is_dir=False,
                 target_exists=target_exists, expect=blockers, tid=tid)  # fmt: skip
        t += _gap(b, 30, 120)
        b.close(t, h, tid=tid)
        return t, not blockers

    def attempt(t: int) -> tuple[int, bool]:
        if mode == "rename":
            return rename_over(t, True)
        t = b.avoid(t, relevant)
        blockers = [
            x for x in relevant if x.open_at(t) and shares_conflict(x.access, x.share, mask, bits)
        ]
        if blockers:
            b.fail_open(t, code, target, access, share, "SHARING VIOLATION", expect=blockers,
                        disposition=disposition, options=options, tid=tid)  # fmt: skip
            return t + _gap(b, 30, 120), False
        h = b.open(t, code, target, access, share, disposition=disposition, options=options,
                   open_result="Overwritten" if mode == "write" else "Opened", tid=tid)  # fmt: skip
        t += _gap(b, 30, 120)
        if mode == "write":
            b.readwrite(t, h, "WriteFile", 0, int(b.rng.uniform(300, 40_000)), tid=tid)
        else:
            b.emit(t, code, "SetDispositionInformationFile", target, detail=format_detail_disposition(True),
                   tid=tid, delete_flag=True)  # fmt: skip
        t += _gap(b, 30, 120)
        b.close(t, h, tid=tid)
        if mode == "delete":
            t, _ = rename_over(t + _gap(b, 50, 200), False)
        return t, True

    return attempt


# ---------------------------------------------------------------------------- permission-denied


def permission_denied(
    b: TraceBuilder,
    t0: int,
    *,
    user: str | None = None,
    process: str | None = None,
    attempts: int = 2,
    retry: RetrySchedule | dict[str, Any] | None = None,
) -> Story:
    """A non-admin process opens the hosts file for Generic Write: ACCESS DENIED by ACL.

    No handle on the file is open at the failures (the process's own read and
    svchost.exe's read closed before), so each attempt is ``no-holder-permission``.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    user = _pick_user(b, user)
    process = (
        process
        if process is not None
        else b.choice(("notepad.exe", "python.exe", "powershell.exe", "Code.exe"))
    )
    base = RetrySchedule.coerce(retry, USER_RETRY)
    schedule = RetrySchedule(
        base.initial_ms, base.factor, base.increment_ms, base.cap_ms, attempts - 1, None
    )
    proc = b.spawn(process, threads=2)
    hosts = "C:\\Windows\\System32\\drivers\\etc\\hosts"
    dns = b.spawn("svchost.exe", threads=2)  # one of the many svchost instances (Dnscache)
    t = t0
    _read_file(b, dns, hosts, t, t + ms(b.rng.uniform(0.2, 2)), share=_SHARE_ALL, size=824)
    t += ms(b.rng.uniform(5, 50))
    _read_file(b, proc, hosts, t, t + ms(b.rng.uniform(0.3, 3)), share=_SHARE_ALL, size=824)
    t += ms(b.rng.uniform(800, 4000))
    registry_denied(b, proc, t - ms(b.rng.uniform(5, 50)))

    def attempt(t: int) -> tuple[int, bool]:
        b.fail_open(t, proc, hosts, ("Generic Write", "Read Attributes"), ("Read", "Write"),
                    "ACCESS DENIED", disposition="OverwriteIf")  # fmt: skip
        return t + _gap(b, 30, 100), False

    retry_loop(t, schedule, attempt)
    return Story(
        {"user": user, "process": process, "attempts": attempts, "retry": schedule.to_dict()}, user
    )


# ---------------------------------------------------------------------------- own-handle


def own_handle(
    b: TraceBuilder,
    t0: int,
    *,
    user: str | None = None,
    process: str = "python.exe",
    attempts: int = 3,
    retry: RetrySchedule | dict[str, Any] | None = None,
    compatible_decoy: bool = True,
) -> Story:
    """A process reads a file (ShareMode: Read, no share-write), keeps the handle, then
    opens the same file for Generic Write: SHARING VIOLATION caused by its own handle.

    It retries ``attempts`` times in all, gives up, and closes its read handle later.
    Decoy: Code.exe holds a compatible read handle (share Read, Write, Delete) throughout.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    user = _pick_user(b, user)
    base = RetrySchedule.coerce(retry, RetrySchedule(100, 1, max_retries=2))
    schedule = RetrySchedule(
        base.initial_ms, base.factor, base.increment_ms, base.cap_ms, attempts - 1, None
    )
    proc = b.spawn(process, threads=2)
    project = b.unique(b.choice(("analysis", "etl", "report", "scraper")))
    path = f"C:\\Users\\{user}\\Projects\\{project}\\data\\results.csv"
    own = b.open(t0, proc, path, ("Generic Read",), ("Read",))
    b.readwrite(t0 + _gap(b, 20, 80), own, "ReadFile", 0, 8192)
    t = t0 + ms(b.rng.uniform(2, 40))
    decoy = None
    if compatible_decoy:
        decoy = b.open(t, b.spawn("Code.exe", threads=2), path, ("Generic Read",), _SHARE_ALL)
        b.readwrite(t + _gap(b, 20, 80), decoy, "ReadFile", 0, 8192)
    t += ms(b.rng.uniform(5, 60))

    def attempt(t: int) -> tuple[int, bool]:
        b.fail_open(t, proc, path, ("Generic Write", "Read Attributes"), ("Read", "Write"),
                    "SHARING VIOLATION", expect=[own], disposition="OverwriteIf")  # fmt: skip
        return t + _gap(b, 30, 100), False

    end, _, _ = retry_loop(t, schedule, attempt)
    end += ms(b.rng.uniform(50, 1500))
    b.close(end, own)
    if decoy is not None:
        b.close(end + ms(b.rng.uniform(10, 800)), decoy)
    return Story(
        {"user": user, "process": process, "attempts": attempts, "retry": schedule.to_dict(),
         "compatible_decoy": compatible_decoy},
        user,
    )  # fmt: skip


# ---------------------------------------------------------------------------- filtered-holder


def filtered_holder(
    b: TraceBuilder,
    t0: int,
    *,
    user: str | None = None,
    process: str = "MSBuild.exe",
    result: str = "SHARING VIOLATION",
    hidden_hold_median_ms: float = 1500.0,
    retry: RetrySchedule | dict[str, Any] | None = None,
) -> Story:
    """MSBuild's Copy fails on a DLL whose holder is not in the trace (the capture was
    filtered to MSBuild.exe), retries every second and succeeds once the hidden holder
    lets go: every failure is ``no-holder-filtered``."""
    user = _pick_user(b, user)
    schedule = RetrySchedule.coerce(retry, COPY_RETRY)
    proc = b.spawn(process, threads=2)
    name = b.unique(b.choice(("Contoso.Core", "Fabrikam.Api", "Northwind.Data", "Tailspin.Web")))
    base = f"C:\\Users\\{user}\\source\\repos\\{name}"
    src = f"{base}\\obj\\Debug\\net8.0\\{name}.dll"
    dst = f"{base}\\bin\\Debug\\net8.0\\{name}.dll"
    size = int(b.rng.uniform(2e4, 2e6))
    t = t0
    source = b.open(t, proc, src, ("Generic Read",), ("Read",))
    b.readwrite(t + _gap(b, 20, 80), source, "ReadFile", 0, min(size, 65536))
    t += ms(b.rng.uniform(0.3, 2))
    b.close(t, source)
    t += _gap(b, 50, 300)
    release = t + ms(b.lognormal_ms(hidden_hold_median_ms, 0.8))
    write_access = ("Generic Write", "Read Attributes")

    def attempt(t: int) -> tuple[int, bool]:
        if t < release:
            b.fail_open(t, proc, dst, write_access, ("Read",), result, disposition="OverwriteIf")
            return t + _gap(b, 30, 100), False
        _, closed = write_new_file(b, proc, dst, size, t, share=("Read",), disposition="OverwriteIf",
                                   open_result="Overwritten", query_name=0)  # fmt: skip
        return closed, True

    retry_loop(t, schedule, attempt)
    return Story(
        {"user": user, "process": process, "result": result,
         "hidden_hold_median_ms": hidden_hold_median_ms, "retry": schedule.to_dict()},
        user,
        filtered_to=proc,
    )  # fmt: skip


# ---------------------------------------------------------------------------- censored


def censored(
    b: TraceBuilder,
    t0: int,
    *,
    user: str | None = None,
    holder: str = "OneDrive.exe",
    process: str = "WINWORD.EXE",
    attempts: int = 4,
    retry: RetrySchedule | dict[str, Any] | None = None,
    siblings: int | None = None,
) -> Story:
    """A sync client holds a document (Generic Read, ShareMode: Read) and never lets go
    before the capture stops; Word's save attempts fail with SHARING VIOLATION and the
    blocker has no CloseFile (``close_row`` null, ``remaining_ms`` null).

    Like any sync client it also reads ``siblings`` other files of the same OneDrive
    folder (open, ReadFile, CloseFile) around that time, so a complete capture shows it
    closing handles: only the document's handle is censored, not the process's closes.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    if siblings is not None and siblings < 0:
        raise ValueError("siblings must be at least 0")
    user = _pick_user(b, user)
    siblings = siblings if siblings is not None else int(b.rng.integers(1, 3))
    base = RetrySchedule.coerce(retry, RetrySchedule(1000, 1.5, max_retries=3))
    schedule = RetrySchedule(
        base.initial_ms, base.factor, base.increment_ms, base.cap_ms, attempts - 1, None
    )
    sync = b.shared(holder, threads=4)
    word = b.spawn(process, threads=2)
    doc = b.unique(b.choice(("report", "minutes", "proposal", "invoice")))
    folder = f"C:\\Users\\{user}\\OneDrive\\Documents"
    path = f"{folder}\\{doc}.docx"
    for _ in range(siblings):
        stem, ext = b.choice(_SYNCED)
        start = t0 + ms(b.rng.uniform(-400, 600))
        sibling = f"{folder}\\{b.unique(stem)}.{ext}"
        _read_file(b, sync, sibling, start, start + ms(b.rng.uniform(0.3, 8)), tid=sync.tids[1],
                   size=int(b.rng.choice([4096, 16384, 65536])))  # fmt: skip
    held = b.open(t0, sync, path, ("Generic Read",), ("Read",))
    b.readwrite(t0 + _gap(b, 20, 80), held, "ReadFile", 0, 65536)
    b.keep_open(held)
    t = t0 + ms(b.rng.uniform(100, 1500))

    def attempt(t: int) -> tuple[int, bool]:
        b.fail_open(t, word, path, ("Generic Read/Write",), ("Read",), "SHARING VIOLATION",
                    expect=[held], disposition="OpenIf")  # fmt: skip
        return t + _gap(b, 30, 100), False

    retry_loop(t, schedule, attempt)
    return Story(
        {
            "user": user,
            "holder": holder,
            "process": process,
            "attempts": attempts,
            "retry": schedule.to_dict(),
            "siblings": siblings,
        },
        user,
    )


# ---------------------------------------------------------------------------- oplock-probe

_PROBE_OPTS = ("Non-Directory File", "Open For Backup", "Open Reparse Point")
_PAGING = ("Non-cached", "Paging I/O", "Synchronous Paging I/O")
_OPLOCK_WRITERS = ("WINWORD.EXE", "calc1.exe", "python.exe")


def _written_path(b: TraceBuilder, process: str, user: str) -> str:
    """A fresh file that ``process`` writes under the user's profile."""
    home = f"C:\\Users\\{user}"
    if process.upper() == "WINWORD.EXE":
        name = b.unique(b.choice(("report", "letter", "draft", "minutes")))
        return f"{home}\\Documents\\{name}.docx"
    if process.lower() == "python.exe":
        project = b.unique(b.choice(("analysis", "etl", "report", "scraper")))
        return f"{home}\\Projects\\{project}\\out\\{b.choice(('results', 'summary', 'export'))}.csv"
    name = b.unique(b.choice(("results", "output", "table", "run")))
    return f"{home}\\Documents\\{name}.dat"


def oplock_probe(
    b: TraceBuilder,
    t0: int,
    *,
    user: str | None = None,
    process: str | None = None,
    scanner: str = "MsMpEng.exe",
    hold_median_ms: float = 400.0,
    hold_sigma: float = 0.8,
    probes: int = 1,
    explorer_decoy: bool = True,
) -> Story:
    """An antivirus probes a file another process is writing, and yields.

    ``process`` (WINWORD.EXE, calc1.exe or python.exe) creates a file (Generic Write,
    Read Attributes; ShareMode: Read, Write), writes it for a lognormal while and closes
    it. Meanwhile ``scanner`` opens it ``probes`` times asking only Read Attributes with
    ``Open Requiring Oplock`` (share Read, Write, Delete): OPLOCK NOT GRANTED, because
    the writer's handle is open. 50-150 µs later it opens again without that option,
    succeeds, queries the file and closes: the probe yielded and nothing waited, so the
    truth's verdict is ``oplock-probe`` with the writer's handle as blocker (the capture
    of Defender probing calc1.exe's output). Decoy: explorer.exe holds an attribute-only
    handle across the first probe (never a blocker).
    """
    if probes < 1:
        raise ValueError("probes must be at least 1")
    user = _pick_user(b, user)
    process = process if process is not None else b.choice(_OPLOCK_WRITERS)
    writer = b.spawn(process, threads=2)
    av = b.shared(scanner, threads=8)
    path = _written_path(b, process, user)
    hold = ms(max(b.lognormal_ms(hold_median_ms, hold_sigma), 20.0, 5.0 * probes))
    t_close = t0 + hold
    held = b.open(
        t0, writer, path, ("Generic Write", "Read Attributes"), ("Read", "Write"),
        disposition="OverwriteIf", options=(*_FILE_OPTS, "Open Reparse Point"),
        open_result="Created", allocation_size=0,
    )  # fmt: skip
    n_writes = int(b.rng.integers(3, 10))
    chunk = int(b.rng.choice([4096, 16384, 65536]))
    spots = sorted(b.rng.uniform(t0 + us(60), t_close - us(60), n_writes))
    for k, t in enumerate(spots):
        b.readwrite(int(t), held, "WriteFile", k * chunk, chunk)
    b.close(t_close, held)
    slot = hold // probes
    times = [
        t0 + i * slot + ms(b.rng.uniform(1.0, max(1.5, slot / 1e6 * 0.6))) for i in range(probes)
    ]
    relevant = [held]
    if explorer_decoy:
        relevant.append(_attribute_reader(b, path, t0, times[0], t_close))
    tid = b.choice(av.tids)
    for t in times:
        t = b.avoid(t, relevant)
        b.fail_open(
            t, av, path, ("Read Attributes",), _SHARE_ALL, "OPLOCK NOT GRANTED",
            expect=[held] if held.open_at(t) else [],
            options=(*_PROBE_OPTS, "Open Requiring Oplock"), tid=tid,
        )  # fmt: skip
        t += us(b.rng.uniform(50, 150))
        fallback = b.open(t, av, path, ("Read Attributes",), _SHARE_ALL, options=_PROBE_OPTS,
                          tid=tid)  # fmt: skip
        t += _gap(b, 10, 60)
        if b.rng.random() < 0.5:
            b.emit(t, av, "FileSystemControl", path, detail="Control: FSCTL_READ_FILE_USN_DATA",
                   tid=tid)  # fmt: skip
        else:
            size = n_writes * chunk
            b.emit(t, av, "QueryStandardInformationFile", path, tid=tid,
                   detail=format_detail_query_standard(size, size))  # fmt: skip
        b.close(t + _gap(b, 10, 60), fallback, tid=tid)
    return Story(
        {
            "user": user, "process": process, "scanner": scanner,
            "hold_median_ms": hold_median_ms, "hold_sigma": hold_sigma, "probes": probes,
            "explorer_decoy": explorer_decoy,
        },
        user,
    )  # fmt: skip


# ---------------------------------------------------------------------------- mapped-section

_MAPPERS = ("SearchProtocolHost.exe", "SearchProtocolHost.exe", "dllhost.exe")
_TRUNCATE_RETRY = RetrySchedule(initial_ms=100, factor=2, max_retries=4)
"""A program retrying a truncate: 100, 200, 400, 800 ms."""


def _mapped_path(b: TraceBuilder, process: str, user: str) -> str:
    home = f"C:\\Users\\{user}"
    if process.lower() == "explorer.exe":
        return f"{home}\\Pictures\\{b.unique(f'IMG_{int(b.rng.integers(1000, 10000))}')}.jpg"
    if process.lower() == "devenv.exe":
        name = b.unique(b.choice(("Contoso.Desktop", "Fabrikam.Viewer", "Northwind.Tools")))
        return (
            f"{home}\\source\\repos\\{name}\\Resources\\{b.choice(('splash', 'logo', 'icon'))}.png"
        )
    project = b.unique(b.choice(("analysis", "features", "model", "survey")))
    return f"{home}\\Projects\\{project}\\data\\{b.choice(('embeddings', 'matrix', 'cache'))}.npy"


def _map(b: TraceBuilder, proc: Proc, path: str, t: int, protection: str) -> int:
    """A section created for ``path``: CreateFileMapping (sometimes the FILE LOCKED WITH
    ONLY READERS form first, as for a read-only handle). Returns the time after."""
    if protection == "PAGE_READONLY" and b.rng.random() < 0.6:
        b.emit(t, proc, "CreateFileMapping", path, "FILE LOCKED WITH ONLY READERS",
               format_detail_mapping(protection))  # fmt: skip
        t += _gap(b, 5, 20)
        b.emit(t, proc, "CreateFileMapping", path, detail=format_detail_mapping(None))
    else:
        b.emit(t, proc, "CreateFileMapping", path, detail=format_detail_mapping(protection))
    return t + _gap(b, 10, 40)


def mapped_section(
    b: TraceBuilder,
    t0: int,
    *,
    user: str | None = None,
    holder: str | None = None,
    process: str | None = None,
    mapper: str | None = None,
    hold_median_ms: float = 300.0,
    hold_sigma: float = 0.8,
    operation: str | None = None,
    retry: RetrySchedule | dict[str, Any] | None = None,
) -> Story:
    """An operation refused with USER MAPPED FILE: a mapped section, not a handle, is in
    the way, so no conflict has handle blockers.

    ``holder="other"``: ``mapper`` (a fresh SearchProtocolHost.exe or dllhost.exe) opens
    the file, maps it (CreateFileMapping) and closes its handle; the section stays.
    ``process`` (python.exe or devenv.exe) opens the file for Generic Write and
    ``operation`` (SetEndOfFileInformationFile or SetAllocationInformationFile) fails
    with USER MAPPED FILE, retried by ``retry`` (100 ms ×2, 4 retries) until the mapper's
    ``Process Exit`` ends the section (lognormal ``hold_median_ms`` after the first
    failure): verdict ``mapped-by-other-process``. ``holder="own"``: ``process``
    (explorer.exe editing a picture's tags) opens the file, maps it, flushes, and its
    paging WriteFile fails with USER MAPPED FILE, retried ~0.1 ms later with success:
    verdict ``mapped-by-own-process``. ``None`` picks one at random.
    """
    if holder is None:
        holder = b.choice(("own", "other"))
    if holder not in ("own", "other"):
        raise ValueError(f"holder must be 'own' or 'other', not {holder!r}")
    ops = ("SetEndOfFileInformationFile", "SetAllocationInformationFile")
    if operation is not None and operation not in ops:
        raise ValueError(f"operation must be one of {', '.join(ops)}, not {operation!r}")
    user = _pick_user(b, user)
    schedule = RetrySchedule.coerce(retry, _TRUNCATE_RETRY)
    if holder == "own":
        process = process if process is not None else "explorer.exe"
        mapper, operation = None, "WriteFile"
        _own_mapping(b, b.shared(process), _mapped_path(b, process, user), t0)
    else:
        process = process if process is not None else b.choice(("python.exe", "devenv.exe"))
        mapper = mapper if mapper is not None else b.choice(_MAPPERS)
        operation = operation if operation is not None else b.choice(ops)
        _other_mapping(
            b, b.spawn(mapper, threads=3), b.spawn(process, threads=2),
            _mapped_path(b, process, user), t0, operation, hold_median_ms, hold_sigma, schedule,
        )  # fmt: skip
    return Story(
        {
            "user": user, "holder": holder, "process": process, "mapper": mapper,
            "hold_median_ms": hold_median_ms, "hold_sigma": hold_sigma,
            "operation": operation, "retry": schedule.to_dict(),
        },
        user,
    )  # fmt: skip


def _own_mapping(b: TraceBuilder, proc: Proc, path: str, t0: int) -> None:
    """The process maps the file it has open for read/write, flushes, and its paging
    write is refused once (USER MAPPED FILE), then accepted ~0.1 ms later."""
    tid = b.choice(proc.tids)
    h = b.open(t0, proc, path, ("Generic Read/Write",), ("Read",), tid=tid)
    t = _map(b, proc, path, t0 + _gap(b, 30, 120), "PAGE_READWRITE")
    b.readwrite(t, h, "ReadFile", 0, 8192, io_flags=_PAGING, tid=tid)
    t += ms(b.rng.uniform(1, 30))
    b.emit(t, proc, "FlushBuffersFile", path, tid=tid)
    t += _gap(b, 20, 80)
    seq = b.readwrite(t, h, "WriteFile", 4096, 4096, result="USER MAPPED FILE", io_flags=_PAGING,
                      tid=tid)  # fmt: skip
    b.expect(seq, mapped_by=[proc])
    t += us(b.rng.uniform(80, 150))
    b.readwrite(t, h, "WriteFile", 4096, 4096, io_flags=_PAGING, tid=tid)
    b.close(t + ms(b.rng.uniform(0.5, 20)), h, tid=tid)


def _other_mapping(
    b: TraceBuilder, mapper: Proc, proc: Proc, path: str, t0: int, operation: str,
    hold_median_ms: float, hold_sigma: float, schedule: RetrySchedule,
) -> None:  # fmt: skip
    """``mapper`` maps the file and closes its handle; ``proc``'s truncation fails with
    USER MAPPED FILE until ``mapper`` exits."""
    size = int(b.rng.uniform(2e5, 2e7)) // 4096 * 4096
    h = b.open(t0, mapper, path, ("Generic Read",), ("Read", "Write"))
    b.emit(t0 + _gap(b, 20, 60), mapper, "QueryStandardInformationFile", path,
           detail=format_detail_query_standard(size, size))  # fmt: skip
    t = _map(b, mapper, path, t0 + _gap(b, 80, 200), "PAGE_READONLY")
    b.readwrite(t, h, "ReadFile", 0, 65536, io_flags=_PAGING)
    t += ms(b.rng.uniform(0.3, 5))
    b.close(t, h)
    t_open = t + ms(b.rng.uniform(20, 2000))
    tid = proc.tids[0]
    mine = b.open(
        t_open, proc, path, ("Generic Write", "Read Attributes"), ("Read",),
        options=(*_FILE_OPTS, "Open Reparse Point"), tid=tid,
    )  # fmt: skip
    t_first = t_open + _gap(b, 40, 200)
    t_exit = t_first + ms(max(b.lognormal_ms(hold_median_ms, hold_sigma), 1.0))
    b.exit_process(t_exit, mapper)
    new_size = int(b.rng.integers(1, max(size // 4096, 2))) * 4096
    detail = format_detail_size(new_size, allocation=operation == "SetAllocationInformationFile")

    def attempt(t: int) -> tuple[int, bool]:
        t = t + 100 if t == t_exit else t
        if t < t_exit:
            b.fail(
                t, proc, operation, path, "USER MAPPED FILE", detail, mapped_by=[mapper], tid=tid
            )
            return t + _gap(b, 30, 100), False
        b.emit(t, proc, operation, path, detail=detail, tid=tid)
        t += _gap(b, 30, 100)
        b.readwrite(t, mine, "WriteFile", 0, min(new_size, 65536), tid=tid)
        return t + _gap(b, 30, 100), True

    end, _, _ = retry_loop(t_first, schedule, attempt)
    b.close(end + _gap(b, 20, 80), mine, tid=tid)


FAMILIES: dict[str, Callable[..., Story]] = {
    "extract-rename": extract_rename,
    "replace-under-indexer": replace_under_indexer,
    "permission-denied": permission_denied,
    "own-handle": own_handle,
    "filtered-holder": filtered_holder,
    "censored": censored,
    "oplock-probe": oplock_probe,
    "mapped-section": mapped_section,
}
"""Family name → story function (keyword parameters with defaults; ``None`` = random)."""
