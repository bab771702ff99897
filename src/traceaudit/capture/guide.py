"""What ``traceaudit capture-profile`` says: every way to record a trace, and the Process
Monitor steps after ``--procmon`` has written its configuration.

Only Procmon's documented command-line switches are used: ``/AcceptEula``, ``/Quiet`` (no
filter confirmation at start), ``/Minimized``, ``/LoadConfig FILE``, ``/BackingFile FILE``
and ``/Terminate`` (ends every running Procmon, which closes the backing file cleanly).
"""

from __future__ import annotations

__all__ = ["OVERVIEW", "procmon_steps"]

OVERVIEW = """\
How to record a trace traceaudit can analyse (from an administrator terminal).

Try first: Process Monitor, filtered on the folder, never on a process. It is the simplest
and shows every process that touches the folder, so the one holding your file is in it:
  traceaudit capture-profile --procmon "C:\\path\\to\\project"
writes traceaudit.pmc (-o FILE for another name) and prints the Procmon commands to run.

When Procmon shows the failure but no process holding the file, record ETW instead: the
kernel's file I/O providers see opens that Process Monitor's filter driver may not.
  traceaudit capture-profile --wpr > traceaudit.wprp   a WPR profile (wpr -start ... -filemode)
  traceaudit capture-profile --xperf                   the xperf command lines
  traceaudit capture-profile --logman                  logman: no kernel session, but
                                                       processes already running stay unnamed
Then: traceaudit analyze <the .PML or .etl>.
"""
"""The bare command's text (standard output)."""


def _arg(path: str) -> str:
    """A path as one argument in cmd and PowerShell: quoted when it holds a space."""
    return f'"{path}"' if any(c in path for c in " &()^;,") else path


def procmon_steps(config: str, folder: str) -> str:
    """The one paragraph ``capture-profile --procmon`` prints (to standard error) after
    writing ``config`` for ``folder``."""
    backing = "C:\\traces\\capture.PML"
    return (
        f"wrote {config}: Process Monitor will keep only file-system events on {folder} and "
        "below it, from every process, and drop the rest while capturing. From an "
        "administrator terminal (C:\\traces: any folder outside the project): "
        f"Procmon64.exe /AcceptEula /Quiet /Minimized /LoadConfig {_arg(config)} "
        f"/BackingFile {backing}, reproduce the failure, then Procmon64.exe /Terminate and "
        f"traceaudit analyze {backing} (if Procmon rolled the capture over into "
        "capture-1.PML, capture-2.PML…, give them all together: they are read as one trace)."
    )
