"""How to record an ETW trace that traceaudit can analyse: WPR, xperf or logman setups.

The analysis needs, for every open, close, rename and delete: its start (with the file
object, share access and path) and its completion status (the OperationEnd that turns an
open into SUCCESS or SHARING VIOLATION), plus process and thread events to name the
processes. That is:

* the NT Kernel Logger with FILE_IO_INIT (operation starts), FILE_IO (their ends and
  status), PROC_THREAD and LOADER (process names), DISK_IO (file names of files opened
  before the trace, by rundown) — the WPR profile and the xperf command line;
* or, in an ordinary session, Microsoft-Windows-Kernel-File with the keywords
  :data:`KERNEL_FILE_KEYWORDS` and Microsoft-Windows-Kernel-Process — the logman command
  line (no kernel session needed, but processes already running stay unnamed).

Record one of the two, not both: the same operations would be in the trace twice.
:func:`capture_profile` returns the text ``traceaudit capture-profile`` prints.
"""

from __future__ import annotations

from traceaudit.errors import UsageError

__all__ = [
    "KERNEL_FILE_KEYWORDS",
    "KERNEL_FILE_KEYWORD_NAMES",
    "KERNEL_FLAGS",
    "TOOLS",
    "capture_profile",
]

KERNEL_FILE_KEYWORD_NAMES: dict[str, int] = {
    "KERNEL_FILE_KEYWORD_FILENAME": 0x10,  # NameCreate/NameDelete: FileKey → path
    "KERNEL_FILE_KEYWORD_FILEIO": 0x20,  # Cleanup, Close, SetInformation, Rename…
    "KERNEL_FILE_KEYWORD_OP_END": 0x40,  # OperationEnd: the status of each operation
    "KERNEL_FILE_KEYWORD_CREATE": 0x80,  # Create: file object, share access, path
    "KERNEL_FILE_KEYWORD_DELETE_PATH": 0x400,  # DeletePath: what is deleted
    "KERNEL_FILE_KEYWORD_RENAME_SETLINK_PATH": 0x800,  # RenamePath/SetLinkPath: the target
}
"""Microsoft-Windows-Kernel-File keywords the analysis needs (READ 0x100 and WRITE 0x200
are left out: they multiply the volume and decide nothing)."""

KERNEL_FILE_KEYWORDS = sum(KERNEL_FILE_KEYWORD_NAMES.values())
"""0xCF0."""

KERNEL_FLAGS = ("PROC_THREAD", "LOADER", "FILE_IO", "FILE_IO_INIT", "DISK_IO")
"""NT Kernel Logger flags (xperf names) for the kernel recording."""

KERNEL_PROCESS = "Microsoft-Windows-Kernel-Process"
KERNEL_PROCESS_KEYWORDS = 0x30  # WINEVENT_KEYWORD_PROCESS | WINEVENT_KEYWORD_THREAD

TOOLS = ("wpr", "xperf", "logman")

_WPR = """\
<?xml version="1.0" encoding="utf-8"?>
<!--
  traceaudit: file opens, closes, renames and deletes with their results.
  As administrator:
    wpr -start traceaudit.wprp -filemode
    ... reproduce the failure ...
    wpr -stop trace.etl
    traceaudit analyze trace.etl
  Kernel flags: {flags}.
-->
<WindowsPerformanceRecorder Version="1.0" Author="traceaudit" Comments="File locks and their holders">
  <Profiles>
    <SystemCollector Id="SystemCollector_traceaudit" Name="NT Kernel Logger">
      <BufferSize Value="1024"/>
      <Buffers Value="256"/>
    </SystemCollector>
    <SystemProvider Id="SystemProvider_traceaudit">
      <Keywords>
        <Keyword Value="ProcessThread"/>
        <Keyword Value="Loader"/>
        <Keyword Value="FileIO"/>
        <Keyword Value="FileIOInit"/>
        <Keyword Value="DiskIO"/>
      </Keywords>
    </SystemProvider>
    <Profile Id="traceaudit.Verbose.File" Name="traceaudit" Description="File I/O with operation results, for traceaudit" LoggingMode="File" DetailLevel="Verbose">
      <Collectors>
        <SystemCollectorId Value="SystemCollector_traceaudit">
          <SystemProviderId Value="SystemProvider_traceaudit"/>
        </SystemCollectorId>
      </Collectors>
    </Profile>
  </Profiles>
</WindowsPerformanceRecorder>
"""

_XPERF = """\
# traceaudit: record file I/O with the NT Kernel Logger (as administrator).
# {flags_doc}
xperf -on {flags} -BufferSize 1024 -MinBuffers 256 -MaxBuffers 1024
# ... reproduce the failure ...
xperf -d trace.etl
# -d merges the trace and adds the volume mapping (drive letters instead of
# \\Device\\HarddiskVolumeN). Then:
traceaudit analyze trace.etl
"""

_LOGMAN = """\
# traceaudit: record Microsoft-Windows-Kernel-File in an ordinary session (as administrator).
# Keywords 0x{keywords:X} = {keyword_names}.
logman start traceaudit -ets -o trace.etl -bs 1024 -nb 64 512 -p Microsoft-Windows-Kernel-File 0x{keywords:X} 0x4
logman update trace traceaudit -ets -p {process} 0x{process_keywords:X} 0x4
# ... reproduce the failure ...
logman stop traceaudit -ets
traceaudit analyze trace.etl
# Paths stay NT device paths (\\Device\\HarddiskVolumeN\\...) and processes that were
# already running are known by PID only; use the WPR profile or xperf for both.
"""

_FLAGS_DOC = (
    "FILE_IO_INIT: operation starts (create, cleanup, close, rename, delete); FILE_IO: their "
    "status (OperationEnd);\n# PROC_THREAD + LOADER: process names; DISK_IO: names of files "
    "opened before the trace."
)


def capture_profile(tool: str = "wpr") -> str:
    """The recording setup for ``tool`` (``wpr``: a WPR profile to save as
    ``traceaudit.wprp``; ``xperf`` or ``logman``: the command lines), with the providers,
    keywords and flags the analysis needs and nothing more."""
    if tool == "wpr":
        return _WPR.format(flags="+".join(KERNEL_FLAGS))
    if tool == "xperf":
        return _XPERF.format(flags="+".join(KERNEL_FLAGS), flags_doc=_FLAGS_DOC)
    if tool == "logman":
        names = "|".join(n.removeprefix("KERNEL_FILE_KEYWORD_") for n in KERNEL_FILE_KEYWORD_NAMES)
        return _LOGMAN.format(
            keywords=KERNEL_FILE_KEYWORDS,
            keyword_names=names,
            process=KERNEL_PROCESS,
            process_keywords=KERNEL_PROCESS_KEYWORDS,
        )
    choices = ", ".join(repr(t) for t in TOOLS)
    raise UsageError(f"capture profile for {tool!r}: unknown tool. Choose one of {choices}.")
