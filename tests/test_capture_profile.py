"""``traceaudit capture-profile``: the overview, and the Process Monitor configuration that
``--procmon`` writes, read back with procmon-parser (a test-only dependency)."""

from __future__ import annotations

import binascii
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from traceaudit.capture.guide import OVERVIEW
from traceaudit.capture.procmon_config import (
    COLUMNS,
    EXCLUDE_RULES,
    HIGHLIGHT_RULES,
    Column,
    Relation,
    Rule,
    folder_config,
    procmon_folder,
    write_procmon_config,
)
from traceaudit.cli import main
from traceaudit.errors import UsageError

pp = pytest.importorskip("procmon_parser")

FOLDER = r"C:\Users\Zoë Ünïcode\my project 𝄞\build (x86)"


def _theirs(rule: Rule):
    return pp.Rule(
        pp.Column(int(rule.column)),
        pp.RuleRelation(int(rule.relation)),
        rule.value,
        pp.RuleAction.INCLUDE if rule.include else pp.RuleAction.EXCLUDE,
    )


def _read(data: bytes):
    return pp.loads_configuration(data)


# -- the file, read back --------------------------------------------------------------------


def test_every_rule_column_and_option_round_trips_through_procmon_parser():
    config = _read(folder_config(FOLDER).to_bytes())
    assert list(config) == [
        "Columns",
        "ColumnCount",
        "ColumnMap",
        "AdvancedMode",
        "Profiling",
        "DestructiveFilter",
        "FilterRules",
        "HighlightRules",
    ]
    assert config["FilterRules"][:2] == [
        pp.Rule(pp.Column.PATH, pp.RuleRelation.IS, FOLDER, pp.RuleAction.INCLUDE),
        pp.Rule(pp.Column.PATH, pp.RuleRelation.BEGINS_WITH, FOLDER + "\\", pp.RuleAction.INCLUDE),
    ]
    assert config["FilterRules"][2:] == [_theirs(r) for r in EXCLUDE_RULES]
    assert config["HighlightRules"] == [_theirs(r) for r in HIGHLIGHT_RULES]
    assert config["ColumnCount"] == len(COLUMNS)
    assert config["ColumnMap"] == [pp.Column(int(c)) for c, _ in COLUMNS] + [pp.Column.NONE] * (
        64 - len(COLUMNS)
    )
    assert config["Columns"] == [w for _, w in COLUMNS] + [0] * (64 - len(COLUMNS))
    assert config["DestructiveFilter"] == 1  # Drop Filtered Events
    assert config["AdvancedMode"] == 0  # CreateFile/CloseFile, not IRP_MJ_CREATE
    assert config["Profiling"] == 0


def test_the_bytes_are_procmon_parsers_own_for_the_same_configuration():
    data = folder_config(FOLDER).to_bytes()
    assert pp.dumps_configuration(_read(data)) == data


def test_the_filter_is_on_the_path_and_keeps_every_holder():
    rules = folder_config(FOLDER).filter_rules
    includes = [r for r in rules if r.include]
    assert {r.column for r in includes} == {Column.PATH}  # never on a process
    excluded_processes = {r.value for r in rules if r.column == Column.PROCESS_NAME}
    assert excluded_processes == {"Procmon.exe", "Procmon64.exe", "Procmon64a.exe"}
    hidden = {r.value for r in rules if r.column == Column.EVENT_CLASS and not r.include}
    assert hidden == {"Registry", "Network", "Profiling"}


def test_a_drive_root_is_one_begins_with_rule():
    rules = folder_config(procmon_folder("d:\\")).filter_rules
    assert [r for r in rules if r.include] == [
        Rule(Column.PATH, Relation.BEGINS_WITH, "D:\\", True)
    ]


# Pieces of a configuration exported by Process Monitor itself (procmon-parser's test
# fixture ``raw_config_full``, "taken from my computer"): the same rule or record from this
# writer must be the same bytes.
_PROCMON_EXPORTED = {
    "rule Process Name is Procmon.exe, Exclude": (
        Rule(Column.PROCESS_NAME, Relation.IS, "Procmon.exe", False),
        "759c00000000000000180000005000720"
        "06f0063006d006f006e002e006500780065000000"
        "0000000000000000",
    ),
    "rule Event Class is Profiling, Exclude": (
        Rule(Column.EVENT_CLASS, Relation.IS, "Profiling", False),
        "929c0000000000000014000000500072006f00660069006c0069006e00670000000000000000000000",
    ),
    "rule Operation begins with IRP_MJ_, Exclude": (
        Rule(Column.OPERATION, Relation.BEGINS_WITH, "IRP_MJ_", False),
        "779c00000400000000100000004900520050005f004d004a005f0000000000000000000000",
    ),
}


@pytest.mark.parametrize("name", list(_PROCMON_EXPORTED))
def test_a_rule_is_written_as_procmon_writes_it(name):
    from traceaudit.capture.procmon_config import _rule

    rule, hexed = _PROCMON_EXPORTED[name]
    assert _rule(rule) == binascii.unhexlify(hexed)


def test_the_drop_filtered_record_is_written_as_procmon_writes_it():
    from traceaudit.capture.procmon_config import _record

    exported = binascii.unhexlify(
        "380000001000000034000000040000004400650073007400720075006300740069007600"
        "6500460069006c007400650072000000" + "01000000"
    )
    assert _record("DestructiveFilter", struct.pack("<I", 1)) == exported


# -- the folder -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("C:\\Users\\me\\proj", "C:\\Users\\me\\proj"),
        ("c:/Users/me/proj/", "C:\\Users\\me\\proj"),
        ("C:\\Users\\\\me\\proj\\\\", "C:\\Users\\me\\proj"),
        ("  C:\\proj  ", "C:\\proj"),
        ("C:\\", "C:\\"),
        ("C:/", "C:\\"),
        ("\\\\server\\share", "\\\\server\\share"),
        ("\\\\server\\share\\team\\", "\\\\server\\share\\team"),
        ("\\\\?\\C:\\very\\long", "C:\\very\\long"),
        ("\\\\?\\UNC\\server\\share\\x", "\\\\server\\share\\x"),
        (FOLDER, FOLDER),
    ],
)
def test_the_folder_is_written_as_procmon_shows_paths(typed, shown):
    assert procmon_folder(typed) == shown


_EXAMPLE = r"C:\path\to\project or \\server\share\project"


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (
            "",
            "--procmon: the folder is empty. Give the folder the failing tool works in, in "
            f"full: {_EXAMPLE}.",
        ),
        (
            "src\\project",
            "--procmon 'src\\project': not a full Windows path. Give the folder the failing "
            f"tool works in, in full: {_EXAMPLE}.",
        ),
        (
            "/home/me/project",
            "--procmon '/home/me/project': not a full Windows path. Give the folder the "
            f"failing tool works in, in full: {_EXAMPLE}.",
        ),
        (
            "C:project",
            "--procmon 'C:project': a drive without a folder after it (C: alone is relative "
            f"to that drive's current folder). Give the path in full: {_EXAMPLE}.",
        ),
        (
            "\\\\server",
            "--procmon '\\\\server': a network path needs a server and a share: "
            "\\\\server\\share\\folder.",
        ),
        (
            'C:\\my project"',
            "--procmon 'C:\\my project\"': ends with a quote: a backslash before a closing "
            'quote (\\") escapes it on Windows. Leave out the trailing backslash.',
        ),
        (
            "C:\\a\\..\\b",
            "--procmon 'C:\\a\\..\\b': holds '.' or '..' parts, which Procmon never shows in "
            "a path. Give the folder without them.",
        ),
        (
            "C:\\a*",
            f"--procmon 'C:\\a*': '*' cannot be in a Windows path. Give the folder in full: "
            f"{_EXAMPLE}.",
        ),
        (
            "C:\\a\x1b[2Jb",
            "--procmon 'C:\\a\\x1b[2Jb': '\\x1b' cannot be in a Windows path. Give the folder "
            f"in full: {_EXAMPLE}.",
        ),
    ],
)
def test_error_bad_folder(typed, message):
    with pytest.raises(UsageError) as caught:
        procmon_folder(typed)
    assert str(caught.value) == message


# -- the output file ------------------------------------------------------------------------


def test_error_output_is_a_trace(tmp_path: Path):
    trace = tmp_path / "capture.PML"
    trace.write_bytes(b"PML_\x09\x00\x00\x00" + b"\x00" * 64)
    with pytest.raises(UsageError) as caught:
        write_procmon_config("C:\\proj", trace)
    assert str(caught.value) == (
        f"{trace}: exists and is not a Process Monitor configuration; refusing to replace "
        "it. Give another file name with -o."
    )
    assert trace.read_bytes().startswith(b"PML_")


def test_error_output_is_a_folder(tmp_path: Path):
    with pytest.raises(UsageError) as caught:
        write_procmon_config("C:\\proj", tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}: is a folder; give a file name for the Procmon configuration."
    )


def test_an_earlier_configuration_is_replaced(tmp_path: Path):
    out = tmp_path / "traceaudit.pmc"
    write_procmon_config("C:\\old", out)
    written, where = write_procmon_config("C:\\new", out)
    assert (written, where) == (out, "C:\\new")
    rules = _read(out.read_bytes())["FilterRules"]
    assert rules[0].value == "C:\\new"
    assert [p.name for p in tmp_path.iterdir()] == ["traceaudit.pmc"]  # no temporary left


# -- the command ----------------------------------------------------------------------------


def _run(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(cwd)  # the default output is in the current folder
    result = CliRunner().invoke(main, ["capture-profile", *args])
    return result, {p.name: p.read_bytes() for p in cwd.iterdir()}


def test_cli_procmon_writes_traceaudit_pmc_and_says_how_to_use_it(tmp_path: Path, monkeypatch):
    result, files = _run(["--procmon", "C:\\Users\\me\\my proj"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == (
        "wrote traceaudit.pmc: Process Monitor will keep only file-system events on "
        "C:\\Users\\me\\my proj and below it, from every process, and drop the rest while "
        "capturing. From an administrator terminal (C:\\traces: any folder outside the "
        "project): Procmon64.exe /AcceptEula /Quiet /Minimized /LoadConfig traceaudit.pmc "
        "/BackingFile C:\\traces\\capture.PML, reproduce the failure, then Procmon64.exe "
        "/Terminate and traceaudit analyze C:\\traces\\capture.PML (if Procmon rolled the "
        "capture over into capture-1.PML, capture-2.PML…, give them all together: they are "
        "read as one trace).\n"
    )
    config = _read(files["traceaudit.pmc"])
    assert config["FilterRules"][0].value == "C:\\Users\\me\\my proj"


def test_cli_procmon_output_with_a_space_is_quoted_in_the_command(tmp_path: Path, monkeypatch):
    result, files = _run(["--procmon", "D:\\src", "-o", "my config.pmc"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert '/LoadConfig "my config.pmc" ' in result.stderr
    assert list(files) == ["my config.pmc"]


def test_cli_bare_prints_the_overview(tmp_path: Path, monkeypatch):
    result, files = _run([], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert result.stdout == OVERVIEW
    assert files == {}
    for line in (
        'traceaudit capture-profile --procmon "C:\\path\\to\\project"',
        "traceaudit capture-profile --wpr > traceaudit.wprp",
        "traceaudit capture-profile --xperf",
        "traceaudit capture-profile --logman",
    ):
        assert line in OVERVIEW
    assert OVERVIEW.index("--procmon") < OVERVIEW.index("--wpr")  # the one to try first


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--procmon", "C:\\x", "--wpr"],
            "error: capture-profile: --procmon and --wpr: choose one way of recording. "
            "See 'traceaudit capture-profile --help'.\n",
        ),
        (
            ["-o", "x.pmc"],
            "error: capture-profile: --output goes with --procmon; the other ways print to "
            "standard output. See 'traceaudit capture-profile --help'.\n",
        ),
        (
            ["--procmon", "project"],
            "error: capture-profile: --procmon 'project': not a full Windows path. Give the "
            "folder the failing tool works in, in full: C:\\path\\to\\project or "
            "\\\\server\\share\\project. See 'traceaudit capture-profile --help'.\n",
        ),
        (
            ["--procmon", "C:\\x", "-o", "missing/x.pmc"],
            "error: missing: no such folder for the Procmon configuration. Create it first.\n",
        ),
    ],
)
def test_error_cli(args, message, tmp_path: Path, monkeypatch):
    result, files = _run(args, tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert result.stderr == message
    assert files == {}
