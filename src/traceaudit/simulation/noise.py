"""Background noise for simulated traces, generated column-wise with numpy and polars.

Noise is what every real capture is mostly made of, and what the analysis must not
mistake for conflicts: image loads with ``FILE LOCKED WITH ONLY READERS`` on
CreateFileMapping, reads with ``FAST IO DISALLOWED``, ``OPLOCK HANDLE CLOSED``,
``BUFFER OVERFLOW`` name queries, ``NAME NOT FOUND`` probes, ``REPARSE``, registry
traffic including registry ``ACCESS DENIED`` (not the file system, so never a conflict),
thread creation. No noise row has a lock-type file-system result.

Noise comes in *units* (a fixed sequence of events such as CreateFile → ReadFile →
CloseFile) generated for all units of a template at once. Units of the same process and
path never overlap in time, so CreateFile/CloseFile pairs nest trivially; a unit that
would overlap an earlier one on the same (process, path) is dropped. Noise paths live
outside every scenario's folders, and NAME NOT FOUND probes use a fresh name each time,
so noise never forms a retry chain either. The last few events are single-event units,
which makes the count exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from traceaudit.display import format_expr
from traceaudit.formats.procmon_text.csv_write import (
    format_detail_createfile,
    format_detail_mapping,
    format_detail_query_standard,
    format_detail_readwrite,
)
from traceaudit.schema import CREATE_OPTION_BITS
from traceaudit.simulation.story import CLOSE, EV_SCHEMA, OPEN, OTHER, Proc, access_mask, share_bits

__all__ = ["NOISE_PROCESSES", "generate_noise"]

NOISE_PROCESSES = (
    "explorer.exe", "svchost.exe", "chrome.exe", "MsMpEng.exe", "SearchIndexer.exe",
    "OneDrive.exe", "dwm.exe", "RuntimeBroker.exe", "System", "lsass.exe", "conhost.exe",
    "WmiPrvSE.exe", "backgroundTaskHost.exe", "Teams.exe",
)  # fmt: skip
"""Processes that make background noise in a full (unfiltered) capture."""

_DLLS = (
    "kernel32.dll", "KernelBase.dll", "ntdll.dll", "user32.dll", "gdi32.dll", "combase.dll",
    "ole32.dll", "shell32.dll", "advapi32.dll", "sechost.dll", "rpcrt4.dll", "bcrypt.dll",
    "crypt32.dll", "ws2_32.dll", "winhttp.dll", "dnsapi.dll", "msvcp_win.dll", "ucrtbase.dll",
    "windows.storage.dll", "propsys.dll", "uxtheme.dll", "dwmapi.dll", "SHCore.dll",
    "profapi.dll", "wintypes.dll", "clbcatq.dll", "oleaut32.dll", "imm32.dll", "msctf.dll",
    "apphelp.dll", "CoreMessaging.dll", "cryptbase.dll", "wldp.dll", "mswsock.dll", "nsi.dll",
    "iphlpapi.dll", "version.dll", "TextInputFramework.dll", "twinapi.appcore.dll", "urlmon.dll",
)  # fmt: skip
_DATA = (
    "C:\\Windows\\Fonts\\segoeui.ttf", "C:\\Windows\\Fonts\\consola.ttf",
    "C:\\Windows\\Fonts\\arial.ttf", "C:\\Windows\\System32\\en-US\\kernel32.dll.mui",
    "C:\\Windows\\System32\\en-US\\shell32.dll.mui", "C:\\Windows\\Globalization\\Sorting\\SortDefault.nls",
    "C:\\Windows\\System32\\locale.nls", "C:\\ProgramData\\Microsoft\\Windows Defender\\Scans\\mpenginedb.db",
    "C:\\Windows\\Prefetch\\CHROME.EXE-1A2B3C4D.pf", "C:\\Windows\\Prefetch\\EXPLORER.EXE-A80E4F97.pf",
    "C:\\Windows\\System32\\catroot2\\edb.log", "C:\\Windows\\System32\\drivers\\etc\\services",
    "{home}\\AppData\\Local\\Google\\Chrome\\User Data\\Default\\Preferences",
    "{home}\\AppData\\Local\\Google\\Chrome\\User Data\\Default\\History",
    "{home}\\AppData\\Local\\Google\\Chrome\\User Data\\Local State",
    "{home}\\AppData\\Local\\Microsoft\\Windows\\Explorer\\thumbcache_256.db",
    "{home}\\AppData\\Local\\Microsoft\\Windows\\Explorer\\iconcache_32.db",
    "{home}\\AppData\\Roaming\\Microsoft\\Windows\\Recent\\AutomaticDestinations\\f01b4d95cf55d32a.automaticDestinations-ms",
    "{home}\\AppData\\Local\\Microsoft\\OneDrive\\settings\\Personal\\global.ini",
    "{home}\\AppData\\Local\\Packages\\MicrosoftTeams_8wekyb3d8bbwe\\LocalCache\\settings.json",
    "{home}\\NTUSER.DAT", "{home}\\Desktop\\desktop.ini", "{home}\\Downloads\\desktop.ini",
)  # fmt: skip
_LOGS = (
    "C:\\ProgramData\\Microsoft\\Windows Defender\\Support\\MPLog-20240601-101010.log",
    "C:\\Windows\\Logs\\CBS\\CBS.log", "C:\\Windows\\System32\\LogFiles\\Sum\\Svc.log",
    "C:\\ProgramData\\Microsoft\\Search\\Data\\Applications\\Windows\\Windows.edb",
    "{home}\\AppData\\Local\\Microsoft\\OneDrive\\logs\\Personal\\SyncEngine-2024-7-15.odl",
    "{home}\\AppData\\Local\\Google\\Chrome\\User Data\\Default\\Network\\Cookies-journal",
    "{home}\\AppData\\Local\\Google\\Chrome\\User Data\\Default\\Session Storage\\000003.log",
    "{home}\\AppData\\Roaming\\Microsoft\\Teams\\logs.txt",
)  # fmt: skip
_DIRS = (
    "C:\\Windows", "C:\\Windows\\System32", "C:\\Program Files", "C:\\ProgramData",
    "{home}", "{home}\\Downloads", "{home}\\Desktop", "{home}\\Documents", "{home}\\AppData\\Local\\Temp",
)  # fmt: skip
_JUNCTIONS = (
    "C:\\Documents and Settings", "C:\\Users\\All Users", "C:\\ProgramData\\Application Data",
    "{home}\\Application Data", "{home}\\Local Settings", "{home}\\My Documents",
    "{home}\\Documents\\My Music",
)  # fmt: skip
"""Compatibility junctions: opening them gives REPARSE."""
_REG = (
    "HKLM\\Software\\Microsoft\\Windows NT\\CurrentVersion\\Image File Execution Options",
    "HKLM\\System\\CurrentControlSet\\Control\\Session Manager",
    "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\FolderDescriptions",
    "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\Advanced",
    "HKCU\\Software\\Classes\\Local Settings\\Software\\Microsoft\\Windows\\Shell\\BagMRU",
    "HKLM\\Software\\Policies\\Microsoft\\Windows Defender",
    "HKLM\\System\\CurrentControlSet\\Services\\Tcpip\\Parameters",
    "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings",
    "HKLM\\Software\\Microsoft\\Cryptography\\Defaults\\Provider Types",
    "HKLM\\System\\CurrentControlSet\\Control\\Nls\\CodePage",
)  # fmt: skip
_REG_DENIED = (
    "HKLM\\System\\CurrentControlSet\\Services\\WinSock2\\Parameters",
    "HKLM\\Software\\Microsoft\\Windows Search",
    "HKLM\\System\\CurrentControlSet\\Services\\SharedAccess",
)
_REG_VALUES = (
    "Type: REG_DWORD, Length: 4, Data: 0",
    "Type: REG_DWORD, Length: 4, Data: 1",
    "Type: REG_SZ, Length: 12, Data: en-US",
    "Type: REG_BINARY, Length: 8, Data: 01 00 00 00 00 00 00 00",
)
_RW = [
    (o, n) for o in (0, 4096, 8192, 32768, 65536, 1048576) for n in (512, 4096, 8192, 16384, 65536)
]


@dataclass(frozen=True)
class _Create:
    """A CreateFile step's fixed Desired Access / ShareMode / Options."""

    access: tuple[str, ...]
    share: tuple[str, ...]
    options: tuple[str, ...] = ("Synchronous IO Non-Alert", "Non-Directory File")
    disposition: str = "Open"
    result: str = "SUCCESS"

    def detail(self) -> str:
        open_result = "Opened" if self.result == "SUCCESS" else None
        return format_detail_createfile(
            self.access, self.disposition, self.options, self.share, open_result
        )


@dataclass(frozen=True)
class _Step:
    """One event of a noise unit; ``detail`` is fixed text or a named detail pool."""

    operation: str
    result: str = "SUCCESS"
    kind: int = OTHER
    gap_us: float = 15.0
    detail: str = ""
    pool: str | None = None
    create: _Create | None = None


@dataclass(frozen=True)
class _Template:
    """A noise unit: its steps, the paths it touches and which processes do it."""

    name: str
    weight: float
    paths: str
    steps: tuple[_Step, ...]
    hold_ms: float = 0.5
    procs: tuple[str, ...] = field(default_factory=tuple)


_READ = _Create(("Generic Read",), ("Read", "Write"))
_READ_ALL = _Create(("Generic Read",), ("Read", "Write", "Delete"))
_IMAGE = _Create(
    ("Read Data/List Directory", "Execute/Traverse", "Synchronize"), ("Read", "Delete")
)
_WRITE = _Create(("Generic Write", "Read Attributes"), ("Read", "Write"), disposition="OpenIf")
_ATTR = _Create(
    ("Read Attributes", "Synchronize"),
    ("Read", "Write", "Delete"),
    ("Synchronous IO Non-Alert", "Open Reparse Point"),
)
_DIR = _Create(
    ("Read Data/List Directory", "Synchronize"),
    ("Read", "Write", "Delete"),
    ("Directory", "Synchronous IO Non-Alert"),
)
_PROBE = _Create(
    ("Read Attributes",),
    ("Read", "Write", "Delete"),
    ("Open Reparse Point",),
    result="NAME NOT FOUND",
)
_REPARSE = _Create(
    ("Read Attributes",), ("Read", "Write", "Delete"), ("Open Reparse Point",), result="REPARSE"
)

_TEMPLATES = (
    _Template("read", 22, "data", (
        _Step("CreateFile", kind=OPEN, create=_READ),
        _Step("ReadFile", pool="rw"),
        _Step("ReadFile", pool="rw"),
        _Step("CloseFile", kind=CLOSE),
    ), hold_ms=0.4),
    _Template("read-fastio", 8, "data", (
        _Step("CreateFile", kind=OPEN, create=_READ_ALL),
        _Step("QueryStandardInformationFile", detail=format_detail_query_standard(249856, 246784)),
        _Step("ReadFile", "FAST IO DISALLOWED", pool="rw-nopri"),
        _Step("ReadFile", pool="rw"),
        _Step("CloseFile", kind=CLOSE),
    ), hold_ms=0.6),
    _Template("image", 12, "dll", (
        _Step("CreateFile", kind=OPEN, create=_IMAGE),
        _Step("CreateFileMapping", "FILE LOCKED WITH ONLY READERS", detail=format_detail_mapping()),
        _Step("QueryStandardInformationFile", detail=format_detail_query_standard(1052672, 1049896)),
        _Step("CreateFileMapping", detail=format_detail_mapping(None)),
        _Step("CloseFile", kind=CLOSE),
    ), hold_ms=1.0),
    _Template("write", 8, "log", (
        _Step("CreateFile", kind=OPEN, create=_WRITE),
        _Step("WriteFile", pool="rw"),
        _Step("WriteFile", pool="rw"),
        _Step("CloseFile", kind=CLOSE),
    ), hold_ms=2.0, procs=("svchost.exe", "MsMpEng.exe", "OneDrive.exe", "chrome.exe", "Teams.exe", "SearchIndexer.exe")),
    _Template("oplock", 4, "data", (
        _Step("CreateFile", kind=OPEN, create=_ATTR),
        _Step("FileSystemControl", "OPLOCK HANDLE CLOSED", detail="Control: FSCTL_REQUEST_OPLOCK"),
        _Step("CloseFile", kind=CLOSE),
    ), hold_ms=20.0, procs=("explorer.exe", "SearchIndexer.exe", "OneDrive.exe")),
    _Template("name", 5, "dll", (
        _Step("CreateFile", kind=OPEN, create=_ATTR),
        _Step("QueryNameInformationFile", "BUFFER OVERFLOW", pool="name-short"),
        _Step("QueryNameInformationFile", pool="name"),
        _Step("CloseFile", kind=CLOSE),
    ), hold_ms=0.2),
    _Template("dir", 6, "dir", (
        _Step("CreateFile", kind=OPEN, create=_DIR),
        _Step("QueryDirectory", pool="dir"),
        _Step("QueryDirectory", "NO MORE FILES"),
        _Step("CloseFile", kind=CLOSE),
    ), hold_ms=0.3),
    _Template("registry", 20, "reg", (
        _Step("RegOpenKey", detail="Desired Access: Read"),
        _Step("RegQueryValue", pool="reg"),
        _Step("RegCloseKey"),
    ), hold_ms=0.1),
)  # fmt: skip

_SINGLES = (
    (_Template("reg-query", 7, "reg", (_Step("RegQueryValue", pool="reg"),)), 0.50),
    (_Template("reg-denied", 1, "reg-denied", (_Step("RegOpenKey", "ACCESS DENIED", detail="Desired Access: All Access"),)), 0.08),
    (_Template("probe", 4, "probe", (_Step("CreateFile", "NAME NOT FOUND", create=_PROBE),)), 0.25),
    (_Template("reparse", 1, "junction", (_Step("CreateFile", "REPARSE", create=_REPARSE),)), 0.05),
    (_Template("thread", 2, "none", (_Step("Thread Create", pool="thread"),)), 0.12),
)  # fmt: skip


def _path_pool(kind: str, homes: Sequence[str]) -> list[str]:
    """The concrete paths of a pool for the trace's users' home folders."""

    def expand(items: Sequence[str]) -> list[str]:
        out: list[str] = []
        for item in items:
            out.extend(item.format(home=h) for h in homes) if "{home}" in item else out.append(item)
        return out

    return {
        "dll": [f"C:\\Windows\\System32\\{d}" for d in _DLLS],
        "data": expand(_DATA),
        "log": expand(_LOGS),
        "dir": expand(_DIRS),
        "junction": expand(_JUNCTIONS),
        "reg": list(_REG),
        "reg-denied": list(_REG_DENIED),
        "none": [""],
        "probe": [""],
    }[kind]


def _detail_column(
    step: _Step, n: int, paths: pl.Series, rng: np.random.Generator
) -> tuple[pl.Series, dict[str, pl.Series]]:
    """The Detail strings of ``n`` events of ``step`` and any structured columns they imply."""
    extra: dict[str, pl.Series] = {}
    if step.create is not None:
        c = step.create
        extra = {
            "access_mask": pl.Series([access_mask(c.access)] * n, dtype=pl.UInt32),
            "share_mode": pl.Series([share_bits(c.share)] * n, dtype=pl.UInt8),
            "disposition": pl.Series([c.disposition] * n, dtype=pl.String),
            "create_options": pl.Series(
                [sum(CREATE_OPTION_BITS[o] for o in c.options)] * n, dtype=pl.UInt32
            ),
            "open_result": pl.Series(
                ["Opened" if c.result == "SUCCESS" else None] * n, dtype=pl.String
            ),
        }
        is_dir = (
            True
            if "Directory" in c.options
            else False
            if "Non-Directory File" in c.options
            else None
        )
        extra["is_directory"] = pl.Series([is_dir] * n, dtype=pl.Boolean)
        extra["delete_on_close"] = pl.Series([False] * n, dtype=pl.Boolean)
        return pl.Series([c.detail()] * n, dtype=pl.String), extra
    if step.pool in ("rw", "rw-nopri"):
        pick = rng.integers(0, len(_RW), n)
        priority = "Normal" if step.pool == "rw" else None
        texts = pl.Series([format_detail_readwrite(o, k, priority=priority) for o, k in _RW])
        idx = pl.Series(pick)
        extra["offset"] = pl.Series([o for o, _ in _RW], dtype=pl.Int64).gather(idx)
        extra["length"] = pl.Series([k for _, k in _RW], dtype=pl.Int64).gather(idx)
        return texts.gather(idx), extra
    if step.pool == "reg":
        return pl.Series(_REG_VALUES).gather(pl.Series(rng.integers(0, len(_REG_VALUES), n))), extra
    if step.pool == "thread":
        tids = pl.Series(rng.integers(100, 16000, n) * 4).cast(pl.String)
        return "Thread ID: " + tids, extra
    frame = pl.DataFrame({"p": paths})
    if step.pool == "name":
        return frame.select(pl.lit("Name: ") + pl.col("p").str.slice(2)).to_series(), extra
    if step.pool == "name-short":
        return frame.select(pl.lit("Name: ") + pl.col("p").str.slice(2, 16)).to_series(), extra
    if step.pool == "dir":
        name = pl.col("p").str.split("\\").list.last()
        return frame.select(
            format_expr(
                "Filter: {}, 1: {}, FileInformationClass: FileBothDirectoryInformation", name, name
            )
        ).to_series(), extra
    return pl.Series([step.detail] * n, dtype=pl.String), extra


@dataclass(frozen=True)
class _Units:
    """Planned units of one template: process index, path, start and step offsets."""

    template: _Template
    procs: list[Proc]
    p_idx: np.ndarray
    paths: pl.Series
    starts: np.ndarray
    offsets: np.ndarray

    def subset(self, mask: np.ndarray) -> _Units:
        return _Units(
            self.template, self.procs, self.p_idx[mask], self.paths.filter(pl.Series(mask)),
            self.starts[mask], self.offsets[mask],
        )  # fmt: skip


class _NoiseMaker:
    """Builds noise frames for one simulation; keeps handle ids and probe names unique."""

    def __init__(
        self, rng: np.random.Generator, procs: Sequence[Proc], homes: Sequence[str],
        start_ns: int, end_ns: int, seq_start: int, hid_start: int,
    ) -> None:  # fmt: skip
        self.rng = rng
        self.procs = list(procs)
        self.homes = list(homes)
        self.start = start_ns // 100
        self.end = max(end_ns // 100, self.start + 1)
        self.seq = seq_start
        self.hid = hid_start
        self.probe = 0
        self.salt = int(rng.integers(0, 2**63))
        self.frames: list[pl.DataFrame] = []
        self.pending: list[_Units] = []
        self.count = 0

    def _procs_for(self, template: _Template) -> list[Proc]:
        chosen = [p for p in self.procs if p.name in template.procs] if template.procs else []
        return chosen or self.procs

    def _paths(self, template: _Template, m: int) -> tuple[np.ndarray, pl.Series]:
        if template.paths == "probe":
            temp = self.homes[0] + "\\AppData\\Local\\Temp"
            # an odd multiplier is a bijection mod 2**64: unique, random-looking names
            codes = ((self.probe + i) * 0x9E3779B97F4A7C15 + self.salt for i in range(m))
            names = [f"{temp}\\~DF{code % 2**64:016X}.TMP" for code in codes]
            self.probe += m
            return np.arange(m), pl.Series(names, dtype=pl.String)
        pool = _path_pool(template.paths, self.homes)
        idx = self.rng.integers(0, len(pool), m)
        return idx, pl.Series(pool, dtype=pl.String).gather(pl.Series(idx))

    def add(self, template: _Template, m: int) -> None:
        """Plan ``m`` units of ``template``; units with handles wait for :meth:`flush`."""
        if m <= 0:
            return
        rng, k = self.rng, len(template.steps)
        procs = self._procs_for(template)
        p_idx = rng.integers(0, len(procs), m)
        _, paths = self._paths(template, m)
        starts = rng.integers(self.start, self.end, m).astype(np.int64) * 100
        gaps = np.zeros((m, k), dtype=np.int64)
        for j, step in enumerate(template.steps[1:], start=1):
            median_us = template.hold_ms * 1000 if step.kind == CLOSE else step.gap_us
            gaps[:, j] = (
                np.maximum(
                    rng.lognormal(np.log(median_us * 1000), 0.9, m).astype(np.int64) // 100, 1
                )
                * 100
            )
        unit = _Units(template, procs, p_idx, paths, starts, np.cumsum(gaps, axis=1))
        if any(step.kind != OTHER for step in template.steps):
            self.pending.append(unit)
        else:
            self._emit(unit)

    def flush(self) -> None:
        """Emit the planned handle units, dropping each one that would overlap an earlier
        unit of the same process on the same path (across all templates)."""
        if not self.pending:
            return
        pids = np.concatenate(
            [np.array([p.pid for p in u.procs], dtype=np.int64)[u.p_idx] for u in self.pending]
        )
        frame = pl.DataFrame(
            {
                "pid": pids,
                "path": pl.concat([u.paths for u in self.pending]).str.to_lowercase(),
                "start": np.concatenate([u.starts for u in self.pending]),
                "end": np.concatenate([u.starts + u.offsets[:, -1] for u in self.pending]),
            }
        ).with_row_index("i")
        prev_end = pl.col("end").cum_max().shift(1).over(["pid", "path"], order_by="start")
        keep = (
            frame.with_columns(prev_end.fill_null(-1).alias("prev"))
            .sort("i")
            .select(pl.col("start") > pl.col("prev"))
            .to_series()
            .to_numpy()
        )
        first = 0
        for unit in self.pending:
            mask = keep[first : first + len(unit.starts)]
            first += len(unit.starts)
            self._emit(unit.subset(mask))
        self.pending = []

    def _emit(self, unit: _Units) -> None:
        """Turn planned units into event frames (one frame per step)."""
        template, procs, p_idx, paths, starts, offsets = (
            unit.template,
            unit.procs,
            unit.p_idx,
            unit.paths,
            unit.starts,
            unit.offsets,
        )
        m, k = len(starts), len(template.steps)
        if m == 0:
            return
        names = pl.Series([p.name for p in procs], dtype=pl.String).gather(pl.Series(p_idx))
        pids = np.array([p.pid for p in procs], dtype=np.int64)[p_idx]
        tid_table = np.array(
            [[p.tids[i % len(p.tids)] for i in range(4)] for p in procs], dtype=np.int64
        )
        tids = tid_table[p_idx, self.rng.integers(0, 4, m)]
        hids = np.arange(self.hid, self.hid + m, dtype=np.int64)
        has_handle = any(s.kind != OTHER for s in template.steps)
        if has_handle:
            self.hid += m
        seq0 = self.seq + np.arange(m, dtype=np.int64) * k
        self.seq += m * k
        for j, step in enumerate(template.steps):
            detail, extra = _detail_column(step, m, paths, self.rng)
            columns = {
                "time": starts + offsets[:, j],
                "seq": seq0 + j,
                "process": names,
                "pid": pids,
                "tid": tids,
                "operation": pl.Series([step.operation] * m, dtype=pl.String),
                "path": paths
                if step.operation != "Thread Create"
                else pl.Series([""] * m, dtype=pl.String),
                "result": pl.Series([step.result] * m, dtype=pl.String),
                "detail": detail,
                "_kind": np.full(m, step.kind, dtype=np.int8),
                "_handle": hids if step.kind != OTHER else np.full(m, -1, dtype=np.int64),
                **extra,
            }
            self.frames.append(_conform(pl.DataFrame(columns)))
        self.count += m * k


def _conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the missing :data:`EV_SCHEMA` columns as nulls (model flags as False)."""
    exprs = []
    for name, dtype in EV_SCHEMA.items():
        if name in frame.columns:
            exprs.append(pl.col(name).cast(dtype))
        elif name in ("_m_dir", "_m_target_exists"):
            exprs.append(pl.lit(False, dtype=dtype).alias(name))
        elif name == "event_class":
            exprs.append(
                pl.when(pl.col("operation").str.starts_with("Reg")).then(pl.lit("Registry"))
                .when(pl.col("operation").str.starts_with("Thread ")).then(pl.lit("Process"))
                .otherwise(pl.lit("File System")).alias(name)
            )  # fmt: skip
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return frame.select(exprs)


def generate_noise(
    rng: np.random.Generator,
    n_events: int,
    *,
    procs: Sequence[Proc],
    homes: Sequence[str],
    start_ns: int,
    end_ns: int,
    seq_start: int,
    hid_start: int,
) -> pl.DataFrame:
    """Exactly ``n_events`` background events by ``procs`` between the two times.

    ``homes`` are user profile folders (``C:\\Users\\alice``) for per-user paths;
    ``seq_start``/``hid_start`` continue the builder's sequence and handle numbering so
    the noise can be merged with the scenario events.
    """
    maker = _NoiseMaker(rng, procs, homes, start_ns, end_ns, seq_start, hid_start)
    if n_events <= 0 or not procs:
        return pl.DataFrame(schema=EV_SCHEMA)
    multi_budget = int(n_events * 0.85)
    total_weight = sum(t.weight for t in _TEMPLATES)
    for template in _TEMPLATES:
        share = multi_budget * template.weight / total_weight
        maker.add(template, int(share // len(template.steps)))
    maker.flush()
    remaining = n_events - maker.count
    weights = np.array([w for _, w in _SINGLES])
    counts = rng.multinomial(remaining, weights / weights.sum())
    for (template, _), count in zip(_SINGLES, counts, strict=True):
        maker.add(template, int(count))
    if not maker.frames:
        return pl.DataFrame(schema=EV_SCHEMA)
    return pl.concat(maker.frames, how="vertical")
