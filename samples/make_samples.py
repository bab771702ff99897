"""Regenerate the sample traces in this folder, deterministically.

    python samples/make_samples.py            # rewrite the samples
    python samples/make_samples.py --check    # fail if a committed sample differs

Every simulated sample comes from :mod:`traceaudit.simulation.generate` with a fixed seed and
fixed parameters, so the files only change when the simulator changes; ``--check``
(used by the tests) says which file would change. Each sample's expected shape (how
many failures, which verdicts) is asserted here too, so a simulator change that alters
the story is caught when the samples are regenerated. ``samples/README.md`` describes
what is in each file and what the analysis should find.

``uv-issue-pasted.tsv`` is not simulated: it is the Procmon rows a user pasted into
astral-sh/uv#1491 (comment of 2024-07-15 16:03 UTC), kept verbatim as the clipboard
text Procmon produced (7 tab-separated fields, no header; LF line ends because the text
went through GitHub's web form). :data:`UV_ISSUE_ROWS` holds those rows and
:func:`traceaudit.formats.procmon_text.csv_write.write_clipboard_rows` turns them back into
exactly that text.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path

from traceaudit.formats.procmon_text.csv_write import ProcmonRow, to_ns, write_clipboard_rows
from traceaudit.simulation.generate import Simulation, simulate, simulate_mix

HERE = Path(__file__).resolve().parent
MAX_BYTES = 200_000

# The rows pasted in astral-sh/uv#1491 (issuecomment of @thecityofguanyu, 2024-07-15):
# (Time of Day, Process Name, PID, Operation, Path, Result, Detail), verbatim.
# fmt: off
UV_ISSUE_ROWS: list[tuple[str, str, int, str, str, str, str]] = [
    ("11:27:27.3794232 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\api\subapi\remove.py", "SUCCESS", "Offset: 0, Length: 2,176, Priority: Normal"),
    ("11:27:27.4956009 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\cli\commands\download.py", "SUCCESS", "Offset: 0, Length: 3,256, Priority: Normal"),
    ("11:27:27.5824242 AM", "uv.exe", 11604, "CreateFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\cli\commands\search.py", "SUCCESS", "Desired Access: Generic Write, Read Attributes, Disposition: Create, Options: Synchronous IO Non-Alert, Non-Directory File, Open Reparse Point, Attributes: n/a, ShareMode: Read, Write, Delete, AllocationSize: 0, OpenResult: Created"),
    ("11:27:27.5828526 AM", "uv.exe", 11604, "QueryNameInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\cli\commands\search.py", "BUFFER OVERFLOW", r"Name: \Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan"),
    ("11:27:27.5828966 AM", "uv.exe", 11604, "QueryNameInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\cli\commands\search.py", "SUCCESS", r"Name: \Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\cli\commands\search.py"),
    ("11:27:27.5829343 AM", "uv.exe", 11604, "QueryBasicInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\cli\commands\search.py", "SUCCESS", "CreationTime: 7/15/2024 11:27:27 AM, LastAccessTime: 7/15/2024 11:27:27 AM, LastWriteTime: 7/15/2024 11:27:27 AM, ChangeTime: 7/15/2024 11:27:27 AM, FileAttributes: A"),
    ("11:27:27.6779132 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\internal\cache\conan_reference_layout.py", "SUCCESS", "Offset: 0, Length: 3,802, Priority: Normal"),
    ("11:27:27.7193186 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\test\assets\genconanfile.py", "SUCCESS", "Offset: 0, Length: 8,192, Priority: Normal"),
    ("11:27:27.7570835 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\tools\apple\xcodedeps.py", "FAST IO DISALLOWED", "Offset: 8,192, Length: 8,047"),
    ("11:27:27.7571054 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\tools\apple\xcodedeps.py", "SUCCESS", "Offset: 8,192, Length: 8,047, Priority: Normal"),
    ("11:27:27.7995744 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\tools\cmake\cmakedeps\templates\target_data.py", "SUCCESS", "Offset: 16,384, Length: 4,231"),
    ("11:27:27.8362180 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\tools\files\packager.py", "SUCCESS", "Offset: 0, Length: 4,177, Priority: Normal"),
    ("11:27:27.8763317 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\tools\google\toolchain.py", "SUCCESS", "Offset: 0, Length: 8,113, Priority: Normal"),
    ("11:27:27.8764108 AM", "uv.exe", 11604, "ReadFile", r"C:\$Extend\$UsnJrnl:$J:$DATA", "SUCCESS", "Offset: 41,971,712, Length: 88, I/O Flags: Non-cached, Paging I/O, Synchronous Paging I/O, Priority: Normal"),
    ("11:27:27.9159855 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan\tools\premake\premakedeps.py", "SUCCESS", "Offset: 0, Length: 8,192, Priority: Normal"),
    ("11:27:27.9610159 AM", "uv.exe", 11604, "CreateFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\client\cache\__init__.py", "SUCCESS", "Desired Access: Generic Write, Read Attributes, Disposition: Create, Options: Synchronous IO Non-Alert, Non-Directory File, Open Reparse Point, Attributes: n/a, ShareMode: Read, Write, Delete, AllocationSize: 0, OpenResult: Created"),
    ("11:27:27.9615439 AM", "uv.exe", 11604, "QueryNameInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\client\cache\__init__.py", "BUFFER OVERFLOW", r"Name: \Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan"),
    ("11:27:27.9615946 AM", "uv.exe", 11604, "QueryNameInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\client\cache\__init__.py", "SUCCESS", r"Name: \Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\client\cache\__init__.py"),
    ("11:27:27.9616186 AM", "uv.exe", 11604, "QueryBasicInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\client\cache\__init__.py", "SUCCESS", "CreationTime: 7/15/2024 11:27:27 AM, LastAccessTime: 7/15/2024 11:27:27 AM, LastWriteTime: 7/15/2024 11:27:27 AM, ChangeTime: 7/15/2024 11:27:27 AM, FileAttributes: A"),
    ("11:27:28.0134359 AM", "uv.exe", 11604, "CreateFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\client\graph\compute_pid.py", "SUCCESS", "Desired Access: Generic Write, Read Attributes, Disposition: Create, Options: Synchronous IO Non-Alert, Non-Directory File, Open Reparse Point, Attributes: n/a, ShareMode: Read, Write, Delete, AllocationSize: 0, OpenResult: Created"),
    ("11:27:28.0140592 AM", "uv.exe", 11604, "QueryNameInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\client\graph\compute_pid.py", "BUFFER OVERFLOW", r"Name: \Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan"),
    ("11:27:28.0141104 AM", "uv.exe", 11604, "QueryNameInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\client\graph\compute_pid.py", "SUCCESS", r"Name: \Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\client\graph\compute_pid.py"),
    ("11:27:28.0141272 AM", "uv.exe", 11604, "QueryBasicInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\client\graph\compute_pid.py", "SUCCESS", "CreationTime: 7/15/2024 11:27:28 AM, LastAccessTime: 7/15/2024 11:27:28 AM, LastWriteTime: 7/15/2024 11:27:28 AM, ChangeTime: 7/15/2024 11:27:28 AM, FileAttributes: A"),
    ("11:27:28.0494167 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\client\remote_manager.py", "SUCCESS", "Offset: 0, Length: 8,192, Priority: Normal"),
    ("11:27:28.1010791 AM", "uv.exe", 11604, "CreateFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\model", "SUCCESS", "Desired Access: Read Data/List Directory, Synchronize, Disposition: Create, Options: Directory, Synchronous IO Non-Alert, Open Reparse Point, Attributes: N, ShareMode: Read, Write, AllocationSize: 0, OpenResult: Created"),
    ("11:27:28.1013980 AM", "uv.exe", 11604, "QueryNameInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\model", "BUFFER OVERFLOW", r"Name: \Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conan"),
    ("11:27:28.1014297 AM", "uv.exe", 11604, "QueryNameInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\model", "SUCCESS", r"Name: \Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\model"),
    ("11:27:28.1014421 AM", "uv.exe", 11604, "QueryBasicInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\model", "SUCCESS", "CreationTime: 7/15/2024 11:27:28 AM, LastAccessTime: 7/15/2024 11:27:28 AM, LastWriteTime: 7/15/2024 11:27:28 AM, ChangeTime: 7/15/2024 11:27:28 AM, FileAttributes: D"),
    ("11:27:28.1014725 AM", "uv.exe", 11604, "CloseFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\model", "SUCCESS", ""),
    ("11:27:28.1015137 AM", "uv.exe", 11604, "IRP_MJ_CLOSE", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\model", "SUCCESS", ""),
    ("11:27:28.1323508 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\model\profile.py", "FAST IO DISALLOWED", "Offset: 8,192, Length: 62"),
    ("11:27:28.1323753 AM", "uv.exe", 11604, "WriteFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0\conans\model\profile.py", "SUCCESS", "Offset: 8,192, Length: 62, Priority: Normal"),
    ("11:27:28.2281959 AM", "uv.exe", 11604, "CreateFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0", "SUCCESS", "Desired Access: Read Attributes, Delete, Synchronize, Disposition: Open, Options: Synchronous IO Non-Alert, Open Reparse Point, Attributes: n/a, ShareMode: Read, Write, Delete, AllocationSize: n/a, OpenResult: Opened"),
    ("11:27:28.2283100 AM", "uv.exe", 11604, "QueryAttributeTagFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0", "SUCCESS", "Attributes: D, ReparseTag: 0x0"),
    ("11:27:28.2283283 AM", "uv.exe", 11604, "QueryBasicInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0", "SUCCESS", "CreationTime: 7/15/2024 11:27:27 AM, LastAccessTime: 7/15/2024 11:27:28 AM, LastWriteTime: 7/15/2024 11:27:28 AM, ChangeTime: 7/15/2024 11:27:28 AM, FileAttributes: D"),
    ("11:27:28.2284142 AM", "uv.exe", 11604, "CreateFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\index\f85683082b98592e\conan\2.5.0\Ac6VfyuHm-z0Y9-KNpzw5", "SUCCESS", "Desired Access: Append Data/Add Subdirectory/Create Pipe Instance, Synchronize, Disposition: Open, Options: , Attributes: n/a, ShareMode: Read, Write, AllocationSize: n/a, OpenResult: Opened"),
    ("11:27:28.2285886 AM", "uv.exe", 11604, "SetRenameInformationFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0", "ACCESS DENIED", r"ReplaceIfExists: True, FileName: C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\index\f85683082b98592e\conan\2.5.0\Ac6VfyuHm-z0Y9-KNpzw5\conan-2.5.0.tar.gz"),
    ("11:27:28.2288963 AM", "uv.exe", 11604, "CloseFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\index\f85683082b98592e\conan\2.5.0\Ac6VfyuHm-z0Y9-KNpzw5", "SUCCESS", ""),
    ("11:27:28.2289789 AM", "uv.exe", 11604, "IRP_MJ_CLOSE", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\index\f85683082b98592e\conan\2.5.0\Ac6VfyuHm-z0Y9-KNpzw5", "SUCCESS", ""),
    ("11:27:28.2290180 AM", "uv.exe", 11604, "CloseFile", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0", "SUCCESS", ""),
    ("11:27:28.2290773 AM", "uv.exe", 11604, "IRP_MJ_CLOSE", r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3\.tmpQYLAdW\conan-2.5.0", "SUCCESS", ""),
    ("11:27:29.1293378 AM", "uv.exe", 11604, "Thread Exit", "", "SUCCESS", "Thread ID: 10608, User Time: 0.0156250, Kernel Time: 0.0312500"),
]
# fmt: on
UV_ISSUE_DATE = "2024-07-15"


def uv_issue_rows() -> list[ProcmonRow]:
    """:data:`UV_ISSUE_ROWS` as writer rows on 2024-07-15 (the date the rows show)."""
    out = []
    for clock, process, pid, operation, path, result, detail in UV_ISSUE_ROWS:
        hms, fraction_ampm = clock.split(".")
        fraction, ampm = fraction_ampm.split(" ")
        stamp = datetime.strptime(f"{UV_ISSUE_DATE} {hms} {ampm}", "%Y-%m-%d %I:%M:%S %p")
        out.append(
            ProcmonRow(
                to_ns(stamp) + int(fraction) * 100, process, pid, operation, path, result, detail
            )
        )
    return out


def _verdicts(sim: Simulation) -> Counter[str]:
    return Counter(c["verdict"] for c in sim.truth["conflicts"])


def uv_extract_rename() -> Simulation:
    """The uv case under Defender: numpy extracted, directory rename retried 5 times."""
    sim = simulate(
        "extract-rename",
        seed=9,
        package="numpy-1.26.4",
        scanner="MsMpEng.exe",
        n_files=20,
        user="username",
    )
    (chain,) = sim.truth["retry_chains"]
    assert chain["succeeded"] and chain["attempts"] == 6, chain
    assert _verdicts(sim) == {"blocked-by-other-process": 5}, _verdicts(sim)
    return sim


def replace_under_indexer() -> Simulation:
    """Code.exe's rename over file.txt blocked by SearchProtocolHost.exe, 4 failures."""
    sim = simulate("replace-under-indexer", seed=2, user="alice")
    (chain,) = sim.truth["retry_chains"]
    assert chain["succeeded"] and chain["attempts"] == 5, chain
    assert _verdicts(sim) == {"blocked-by-other-process": 4}, _verdicts(sim)
    return sim


def mixed_small() -> Simulation:
    """600 events with every family once or more, and background noise."""
    sim = simulate_mix(600, seed=4593, scenario_share=0.7)
    assert all(n > 0 for n in sim.params["scenarios"].values()), sim.params["scenarios"]
    assert set(_verdicts(sim)) == {
        "blocked-by-other-process", "blocked-by-own-handle", "no-holder-filtered", "no-holder-permission",
        "oplock-probe", "mapped-by-own-process", "mapped-by-other-process",
    }, _verdicts(sim)  # fmt: skip
    return sim


def write_all(folder: Path) -> list[Path]:
    """Write every sample into ``folder``; return the written paths."""
    written = []
    for name, make in (
        ("uv-extract-rename", uv_extract_rename),
        ("replace-under-indexer", replace_under_indexer),
        ("mixed-small", mixed_small),
    ):
        sim = make()
        written.append(sim.write_csv(folder / f"{name}.csv"))
        written.append(sim.write_truth(folder / f"{name}.truth.json"))
    written.append(
        write_clipboard_rows(uv_issue_rows(), folder / "uv-issue-pasted.tsv", newline="\n")
    )
    for path in written:
        assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed samples instead of writing"
    )
    args = parser.parse_args(argv)
    if not args.check:
        for path in write_all(HERE):
            print(f"wrote {path.relative_to(HERE.parent)} ({path.stat().st_size:,} bytes)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = [
            p.name for p in write_all(Path(tmp)) if not filecmp.cmp(p, HERE / p.name, shallow=False)
        ]
    if stale:
        print(
            f"out of date: {', '.join(stale)}; run python samples/make_samples.py", file=sys.stderr
        )
        return 1
    print("samples are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
