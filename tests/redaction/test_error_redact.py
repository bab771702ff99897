"""Refusals of ``traceaudit redact``: every message is asserted whole.

Each names the file, says what is wrong and what to do; the CLI prints it as
``error: <message>`` and exits 3, never with a traceback.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_redact import PLANTED, PLANTED_COLUMNS, PLANTED_SECRETS, csv_text

from traceaudit import cli as cli_module
from traceaudit.cli import main
from traceaudit.errors import TraceFormatError, UnknownFormatError, UsageError
from traceaudit.formats import load_trace
from traceaudit.formats.convert import write_events
from traceaudit.redaction.context import Context
from traceaudit.redaction.keys import Pseudonyms
from traceaudit.redaction.redactor import RedactionLeakError, redact
from traceaudit.redaction.rows import RowRewriter

KEY = bytes(32)
HEADER = '"Time of Day","Process Name","PID","Operation","Path","Result","Detail","User"'
ROW = (
    '"7:19:37.0147934 AM","Code.exe","12","CreateFile","C:\\Users\\IEUser\\notes.txt",'
    '"SUCCESS","","MSEDGEWIN10\\IEUser"'
)


def trace(tmp_path: Path, name: str = "Logfile.CSV") -> Path:
    path = tmp_path / name
    path.write_bytes(f"{HEADER}\r\n{ROW}\r\n".encode("utf-8-sig"))
    return path


USAGE_EXIT = cli_module.EXIT_USAGE
"""The CLI's exit status for a :class:`UsageError` (bad input is ``EXIT_BAD_INPUT``)."""


def cli(*args: str):
    return CliRunner().invoke(main, ["redact", *args])


def test_error_output_is_the_input(tmp_path, monkeypatch):
    source = trace(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as refused:
        redact(source, Path(".") / "sub" / ".." / "Logfile.CSV", key=KEY)
    assert str(refused.value) == (
        "Logfile.CSV: is the input trace itself; give another output path with -o "
        "(redact never writes over its input)."
    )
    assert source.read_bytes().startswith(b"\xef\xbb\xbf" + HEADER.encode())


def test_error_output_is_the_input_on_the_command_line(tmp_path):
    """The command line checks its output paths before calling the library."""
    source = trace(tmp_path)
    result = cli(str(source), "-o", str(source))
    assert result.exit_code == USAGE_EXIT
    assert result.stderr == (
        f"error: {source}: this is an input trace; refusing to write the redacted trace over "
        "it. Give another file name.\n"
    )


@pytest.mark.parametrize("name", ["Logfile.PML", "Logfile.PML.gz"])
def test_error_pml_cut_in_its_header(tmp_path, name):
    data = b"PML_" + b"\x09\x00\x00\x00" + bytes(600)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(TraceFormatError) as refused:
        redact(path, tmp_path / "out.pml", key=KEY)
    assert str(refused.value) == (
        f"{name}: header at 0x0: the file is only 608 bytes, a PML header takes 0x3A8. The "
        "file was cut short; copy it again from the machine that captured it."
    )
    assert not (tmp_path / "out.pml").exists()


def test_error_pml_of_an_unknown_version(tmp_path):
    path = tmp_path / "Logfile.PML"
    path.write_bytes(b"PML_" + (5).to_bytes(4, "little") + bytes(0x3A8))
    with pytest.raises(TraceFormatError) as refused:
        redact(path, tmp_path / "out.pml", key=KEY)
    assert str(refused.value) == (
        "Logfile.PML: header at 0x4: PML version 5 is not supported (readable: 7, 9). Open the "
        "log in Process Monitor and save it again (File > Save, PML) to write the current "
        "version, or export it as CSV."
    )
    assert not (tmp_path / "out.pml").exists()


def test_error_pml_with_a_damaged_strings_table(tmp_path):
    """A header whose tables are in order but whose strings table counts more strings than
    fit before the icon table."""
    header = bytearray(0x3A8 + 64)
    header[0:4] = b"PML_"
    header[4:8] = (9).to_bytes(4, "little")
    header[0x240:0x248] = (0x3A8).to_bytes(8, "little")
    for offset, value in ((0x250, 0x3A8), (0x258, 0x3B0), (0x260, 0x3C0)):
        header[offset : offset + 8] = value.to_bytes(8, "little")
    header[0x3B0:0x3B4] = (1000).to_bytes(4, "little")
    path = tmp_path / "damaged.pml"
    path.write_bytes(bytes(header))
    with pytest.raises(TraceFormatError) as refused:
        redact(path, tmp_path / "out.pml", key=KEY)
    assert str(refused.value) == (
        "damaged.pml: strings table at 0x3B0: 1000 strings do not fit before 0x3C0: the table "
        "is damaged. Save the log from Process Monitor again, or export it as CSV and redact "
        "that."
    )
    assert not (tmp_path / "out.pml").exists()


def test_error_parquet_is_refused(tmp_path):
    parquet = write_events(load_trace(trace(tmp_path)), tmp_path / "events.parquet")
    with pytest.raises(TraceFormatError) as refused:
        redact(parquet, tmp_path / "out.parquet", key=KEY)
    message = str(refused.value)
    assert message.startswith("events.parquet: a ")
    assert message.endswith(
        ", which redact cannot rewrite. Redact the trace it was converted from, then convert "
        "the redacted one."
    )


def test_error_not_a_trace(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some notes\n", encoding="utf-8")
    with pytest.raises(UnknownFormatError) as refused:
        redact(path, tmp_path / "out.txt", key=KEY)
    assert str(refused.value).startswith(
        "notes.txt: not a trace traceaudit can read (looks like plain text with no header "
        "traceaudit knows)."
    )
    assert "just some notes" not in str(refused.value)


def test_error_unreadable_key_file(tmp_path):
    source = trace(tmp_path)
    key_file = tmp_path / "redact.key"
    key_file.write_text("not a key\n", encoding="ascii")
    with pytest.raises(UsageError) as refused:
        redact(source, tmp_path / "out.csv", key=key_file)
    assert str(refused.value) == (
        f"{key_file}: not a redaction key (expected 64 hex digits). Give the key file "
        "traceaudit redact created, or a path that does not exist yet to create one."
    )
    result = cli(str(source), "-o", str(tmp_path / "out.csv"), "--key-file", str(key_file))
    assert result.exit_code == USAGE_EXIT and result.stderr == f"error: {refused.value}\n"
    assert not (tmp_path / "out.csv").exists()


def test_error_key_file_is_a_folder(tmp_path):
    with pytest.raises(UsageError) as refused:
        redact(trace(tmp_path), tmp_path / "out.csv", key=tmp_path)
    assert str(refused.value) == f"{tmp_path}: is a folder, not a key file. Give a file path."


def test_error_key_file_in_a_missing_folder(tmp_path):
    key_file = tmp_path / "keys" / "redact.key"
    with pytest.raises(UsageError) as refused:
        redact(trace(tmp_path), tmp_path / "out.csv", key=key_file)
    assert str(refused.value) == (
        f"{key_file}: cannot create the key file: the folder {key_file.parent} does not exist."
    )


def test_error_unknown_keep_class(tmp_path):
    source = trace(tmp_path)
    with pytest.raises(UsageError) as refused:
        redact(source, tmp_path / "out.csv", key=KEY, keep=["users"])
    assert str(refused.value) == (
        "--keep 'users': unknown class. Choose from: cmdline, computer, domain, email, env, "
        "ip, path, sid, unc, user."
    )
    result = cli(str(source), "-o", str(tmp_path / "out.csv"), "--keep", "users")
    assert result.exit_code == USAGE_EXIT
    assert result.stderr == (
        "error: redact: --keep 'users': unknown class. Choose from: cmdline, computer, domain, "
        "email, env, ip, path, sid, unc, user. See 'traceaudit redact --help'.\n"
    )


def test_error_output_folder_missing(tmp_path):
    with pytest.raises(UsageError) as refused:
        redact(trace(tmp_path), tmp_path / "nowhere" / "out.csv", key=KEY)
    assert str(refused.value) == (
        f"out.csv: cannot write the output: the folder {tmp_path / 'nowhere'} does not exist."
    )


def test_error_map_would_overwrite_the_input(tmp_path):
    source = trace(tmp_path)
    with pytest.raises(UsageError) as refused:
        redact(source, tmp_path / "out.csv", key=KEY, map_path=source)
    assert str(refused.value) == (
        "Logfile.CSV: the --map file would overwrite the input trace; give another path."
    )


def test_error_key_file_is_the_output(tmp_path):
    with pytest.raises(UsageError) as refused:
        redact(trace(tmp_path), tmp_path / "out.csv", key=tmp_path / "out.csv")
    assert str(refused.value) == (
        "out.csv: the key file cannot also be the input, the output or the --map file; give "
        "another path."
    )


def test_error_secret_file_missing(tmp_path):
    result = cli(str(trace(tmp_path)), "-o", str(tmp_path / "o.csv"), "--secret-file", "none.txt")
    assert result.exit_code == USAGE_EXIT
    assert result.stderr == "error: none.txt: no such secret file. Check the path.\n"


def test_error_leak_check_a_secret_the_rewriter_cannot_reach(tmp_path):
    """Column names are never rewritten, so a --secret equal to one leaks."""
    source = trace(tmp_path)
    out = tmp_path / "out.csv"
    with pytest.raises(RedactionLeakError) as refused:
        redact(source, out, key=KEY, secrets=["Detail"])
    assert str(refused.value) == (
        "out.csv: redaction check failed: 1 secret of class secret leaked ('Detail' on "
        "line 1). The output was removed."
    )
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["Logfile.CSV"]  # no temporary file left


def test_error_leak_check_when_the_writer_skips_redaction(tmp_path, monkeypatch):
    """A writer that loses the rewritten fields is caught by reading the output back:
    the user, the domain and the file name ``notes``.

    (MSEDGEWIN10 is only seen as the domain half of the User column here, so it counts
    as a domain: nothing says it is a computer.)"""
    rewrite = RowRewriter.row

    def leaky(self: RowRewriter, fields: list[str]) -> list[str]:
        rewritten = rewrite(self, fields)
        return rewritten if self.ctx.discovering else list(fields)

    monkeypatch.setattr(RowRewriter, "row", leaky)
    source = trace(tmp_path)
    out = tmp_path / "out.csv"
    result = cli(str(source), "-o", str(out), "--key-file", str(tmp_path / "k.key"))
    assert result.exit_code == 3
    assert result.stderr == (
        "error: out.csv: redaction check failed: 3 secrets of class user, domain, path "
        "leaked ('IEUser' on line 2, 'MSEDGEWIN10' on line 2, 'notes' on line 2). The output "
        "was removed.\n"
    )
    assert not out.exists()


# --------------------------------------------------------------------------- secret words


@pytest.mark.parametrize(
    ("word", "message"),
    [
        (
            "e",
            "secret 'e': too short (1 character; at least 3). Secret words are replaced "
            "everywhere, even inside other words: replacing so short a word would destroy the "
            "trace. Give the whole word (a name is replaced where it stands as a user, computer "
            "or file name anyway).",
        ),
        (
            "ab",
            "secret 'ab': too short (2 characters; at least 3). Secret words are replaced "
            "everywhere, even inside other words: replacing so short a word would destroy the "
            "trace. Give the whole word (a name is replaced where it stands as a user, computer "
            "or file name anyway).",
        ),
        (
            ".",
            "secret '.': has no letter or digit. Secret words are replaced everywhere, even "
            "inside other words, and spaces and punctuation are in every line of a trace: "
            "replacing them would destroy the trace. Give a word.",
        ),
        (
            "  ",
            "secret '  ': has no letter or digit. Secret words are replaced everywhere, even "
            "inside other words, and spaces and punctuation are in every line of a trace: "
            "replacing them would destroy the trace. Give a word.",
        ),
    ],
)
def test_error_secret_too_short_or_without_a_letter(tmp_path, word, message):
    """--secret e used to end in RuntimeError: no free pseudonym for a path value."""
    source = trace(tmp_path)
    with pytest.raises(UsageError) as refused:
        redact(source, tmp_path / "out.csv", key=KEY, secrets=["ACME", word])
    assert str(refused.value) == message
    result = cli(str(source), "-o", str(tmp_path / "out.csv"), "--secret", word)
    assert result.exit_code == USAGE_EXIT and result.stderr == f"error: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Logfile.CSV"]


def test_error_secret_file_with_a_one_letter_word(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# our words\nACME\na\n", encoding="utf-8")
    result = cli(str(trace(tmp_path)), "-o", str(tmp_path / "o.csv"), "--secret-file", str(words))
    assert result.exit_code == USAGE_EXIT
    assert result.stderr.startswith("error: secret 'a': too short (1 character; at least 3).")


def test_error_no_pseudonym_is_free_of_the_secrets(tmp_path, monkeypatch):
    """The pseudonym search is bounded: were every candidate to hold a secret, it stops
    with a UsageError (it used to raise a bare RuntimeError)."""
    monkeypatch.setattr(Context, "_contains_secret", lambda self, text: "abc")
    with pytest.raises(UsageError) as refused:
        redact(trace(tmp_path), tmp_path / "out.csv", key=KEY)
    assert str(refused.value) == (
        "no pseudonym for a user value is free of the secrets: all 64 candidates contained "
        "one ('abc'). Give longer, more specific --secret words."
    )
    assert not (tmp_path / "out.csv").exists()


def test_error_map_folder_missing(tmp_path):
    map_path = tmp_path / "private" / "map.json"
    with pytest.raises(UsageError) as refused:
        redact(trace(tmp_path), tmp_path / "out.csv", key=KEY, map_path=map_path)
    assert str(refused.value) == (
        f"map.json: cannot write the --map file: the folder {map_path.parent} does not exist."
    )
    assert not (tmp_path / "out.csv").exists()


# --------------------------------------------------------------------------- every class checked


@pytest.mark.parametrize(
    ("cls", "line"),
    [
        ("user", 2),
        ("computer", 2),
        ("domain", 2),
        ("sid", 3),
        ("email", 4),
        ("ip", 2),
        ("unc", 5),
        ("cmdline", 2),
        ("env", 2),
        ("path", 2),
        ("secret", 6),
    ],
)
def test_error_leak_check_names_the_class_a_rewriter_failed_to_replace(
    tmp_path, monkeypatch, cls, line
):
    """With one class's pseudonyms switched off, its planted secret reaches the output:
    the leak check finds it, names the class and removes the output."""
    assign = Pseudonyms.assign

    def skip_one(self, kind, original, make, *, group=""):
        return original if kind == cls else assign(self, kind, original, make, group=group)

    monkeypatch.setattr(Pseudonyms, "assign", skip_one)
    source = tmp_path / "in.csv"
    source.write_bytes(csv_text(PLANTED, PLANTED_COLUMNS).encode("utf-8-sig"))
    out = tmp_path / "out.csv"
    with pytest.raises(RedactionLeakError) as refused:
        redact(source, out, key=KEY, secrets=["Bluebird"])
    assert str(refused.value) == (
        f"out.csv: redaction check failed: 1 secret of class {cls} leaked "
        f"({PLANTED_SECRETS[cls]!r} on line {line}). The output was removed."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
