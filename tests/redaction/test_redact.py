"""``traceaudit redact``: what is replaced, what is kept, and that the file stays itself.

Traces are written by hand into tmp_path (raw CSV text, so every dialect detail is under
the test's control) and redacted with a fixed key, so pseudonyms are reproducible.
"""

from __future__ import annotations

import csv
import gzip
import io
import ipaddress
import json
import os
import re
import stat
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locations import SAMPLES
from traceaudit.cli import main
from traceaudit.formats import load_trace
from traceaudit.redaction.redactor import CLASSES, RedactionResult, redact

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SAMPLES = SAMPLES
COLUMNS = ("Time of Day", "Process Name", "PID", "Operation", "Path", "Result", "Detail")
CREATE = (
    "Desired Access: Generic Read, Disposition: Open, Options: Synchronous IO Non-Alert, "
    "Non-Directory File, Attributes: n/a, ShareMode: Read, Write, AllocationSize: n/a, "
    "OpenResult: Opened"
)
ENV = (
    'Parent PID: 4620, Command line: "C:\\Users\\IEUser\\Downloads\\tool.exe" --token '
    "s3cr3tvalue -v, Current directory: C:\\Users\\IEUser\\Downloads\\, Environment: "
    "\r;\t=::=::\\\r;\tAPPDATA=C:\\Users\\IEUser\\AppData\\Roaming\r;\tCOMPUTERNAME=MSEDGEWIN10"
    "\r;\tUSERDOMAIN=MSEDGEWIN10\r;\tUSERNAME=IEUser\r;\tNUMBER_OF_PROCESSORS=4\r;\t"
    "LOGONSERVER=\\\\MSEDGEWIN10\r;\tPath=C:\\Windows\\system32;C:\\Users\\IEUser\\bin\r;\t"
    "BUILD_TOKEN=hunter2hunter2"
)


def row(
    n: int,
    process: str,
    op: str,
    path: str,
    result: str = "SUCCESS",
    detail: str = "",
    **extra: str,
) -> dict[str, str]:
    values = {
        "Time of Day": f"7:19:{n // 100:02d}.{n % 100:07d} AM",
        "Process Name": process,
        "PID": str(1000 + len(process)),
        "Operation": op,
        "Path": path,
        "Result": result,
        "Detail": detail,
    }
    values.update(extra)
    return values


def csv_text(
    rows: list[dict[str, str]], columns=COLUMNS, *, quoted=True, delimiter=",", end="\r\n"
) -> str:
    buffer = io.StringIO(newline="")
    quoting = csv.QUOTE_ALL if quoted else csv.QUOTE_MINIMAL
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator="\r\n")
    writer.writerow(columns)
    for values in rows:
        writer.writerow([values.get(c, "") for c in columns])
    text = buffer.getvalue()
    return text if end == "\r\n" else text.replace("\r\n", end)


def write(path: Path, text: str, encoding: str = "utf-8-sig") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def rows_of(path: Path, encoding: str = "utf-8-sig") -> list[list[str]]:
    text = path.read_bytes().decode(encoding)
    delimiter = "\t" if text.split("\n", 1)[0].count("\t") else ","
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


BASIC = [
    row(1, "Code.exe", "CreateFile", "C:\\Users\\Bob\\Documents\\notes\\file.txt", detail=CREATE),
    row(2, "Code.exe", "CreateFile", "c:\\users\\bob\\documents\\NOTES\\File.TXT", detail=CREATE),
    row(3, "SearchProtocolHost.exe", "CloseFile", "C:\\Users\\Bob\\Documents\\notes"),
    row(
        4,
        "uv.exe",
        "SetRenameInformationFile",
        "C:\\Users\\Bob\\AppData\\Local\\Temp\\.tmpcUIakH\\myproject-1.0",
        "ACCESS DENIED",
        "ReplaceIfExists: True, FileName: C:\\Users\\Bob\\AppData\\Local\\uv\\cache\\archive-v0"
        "\\f85683082b98592e\\myproject-1.0.tar.gz",
    ),
    row(5, "secret-tool.exe", "CreateFile", "C:\\Windows\\System32\\crypt32.dll", detail=CREATE),
    row(
        6,
        "Explorer.EXE",
        "QueryNameInformationFile",
        "C:\\Users\\Bob\\notes.txt",
        detail="Name: \\Users\\Bob\\notes.txt",
    ),
    row(
        7,
        "Explorer.EXE",
        "CreateFile",
        "C:\\ProgramData\\{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\\x.dat",
        detail=CREATE,
    ),
]


def redact_rows(
    tmp_path: Path, rows: list[dict[str, str]], columns=COLUMNS, **options
) -> tuple[list[list[str]], RedactionResult]:
    source = write(tmp_path / "in.csv", csv_text(rows, columns))
    out = tmp_path / "out.csv"
    result = redact(source, out, key=options.pop("key", KEY), **options)
    return rows_of(out), result


# --------------------------------------------------------------------------- what is replaced


def test_user_folder_and_file_names_become_pseudonyms_with_depth_and_extension_kept(tmp_path):
    rows, result = redact_rows(tmp_path, BASIC)
    path = rows[1][4]
    assert re.fullmatch(
        r"C:\\Users\\user_[0-9a-f]{8}\\Documents\\name_[0-9a-f]{10}\\name_[0-9a-f]{10}\.txt", path
    )
    assert "bob" not in json.dumps(rows).lower() and "notes" not in json.dumps(rows).lower()
    assert result.counts["user"] == 1 and result.rows == len(BASIC)


def test_the_same_path_in_another_case_gets_the_same_pseudonyms_modulo_case(tmp_path):
    rows, _ = redact_rows(tmp_path, BASIC)
    assert rows[1][4].lower() == rows[2][4].lower()
    assert rows[3][4].lower() == rows[1][4].lower().rsplit("\\", 1)[0]  # the parent folder


def test_generated_names_keep_their_shape(tmp_path):
    rows, _ = redact_rows(tmp_path, BASIC)
    parts = rows[4][4].split("\\")
    tmp = parts[6]
    assert tmp.startswith(".tmp") and len(tmp) == len(".tmpcUIakH") and tmp != ".tmpcUIakH"
    assert [c.isupper() for c in tmp] == [c.isupper() for c in ".tmpcUIakH"]
    target = rows[4][6].split("FileName: ", 1)[1].split("\\")
    assert re.fullmatch(r"[0-9a-f]{16}", target[-2]) and target[-2] != "f85683082b98592e"
    assert target[-1].endswith(".tar.gz") and target[5:7] == ["uv", "cache"]
    guid = rows[7][4].split("\\")[2]
    assert re.fullmatch(r"\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}", guid)
    assert guid != "{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}"


def test_rename_target_and_query_name_are_rewritten_like_the_path_column(tmp_path):
    rows, _ = redact_rows(tmp_path, BASIC)
    assert rows[6][6] == "Name: " + rows[6][4][2:]
    source_dir = rows[4][4].rsplit("\\", 1)[0]
    target = rows[4][6].split("FileName: ", 1)[1]
    assert target.startswith(source_dir.split("\\Temp\\")[0])  # same user pseudonym


def test_well_known_software_and_system_paths_are_kept(tmp_path):
    rows, _ = redact_rows(tmp_path, BASIC)
    assert rows[5][4] == "C:\\Windows\\System32\\crypt32.dll"
    assert [r[1] for r in rows[1:]].count("Code.exe") == 2
    assert {"uv.exe", "SearchProtocolHost.exe", "Explorer.EXE"} <= {r[1] for r in rows}
    assert re.fullmatch(r"name_[0-9a-f]{10}\.exe", rows[5][1])
    assert rows[1][6] == CREATE  # Detail grammar untouched


def test_user_column_environment_block_and_command_line(tmp_path):
    columns = (*COLUMNS, "User", "Command Line")
    rows, result = redact_rows(
        tmp_path,
        [
            row(
                1,
                "tool.exe",
                "Process Start",
                "",
                detail=ENV,
                User="MSEDGEWIN10\\IEUser",
                **{
                    "Command Line": '"C:\\Users\\IEUser\\Downloads\\tool.exe" --token s3cr3tvalue -v'
                },
            ),
            row(
                2,
                "svchost.exe",
                "RegOpenKey",
                "HKU\\S-1-5-21-3706294487-1660119111-780260463-1001_Classes\\Software",
                User="NT AUTHORITY\\SYSTEM",
            ),
        ],
        columns,
    )
    text = json.dumps(rows)
    for secret in ("IEUser", "MSEDGEWIN10", "s3cr3tvalue", "hunter2", "3706294487"):
        assert secret not in text
    detail = rows[1][6]
    assert "\r;\tNUMBER_OF_PROCESSORS=4\r;\t" in detail  # harmless values and separators kept
    assert re.search(r"COMPUTERNAME=host_[0-9a-f]{8}\r;\tUSERDOMAIN=host_[0-9a-f]{8}\r", detail)
    assert re.search(r"LOGONSERVER=\\\\host_[0-9a-f]{8}\r", detail)
    assert re.search(r"BUILD_TOKEN=env_[0-9a-f]{8}$", detail)
    assert re.search(r"Path=C:\\Windows\\system32;C:\\Users\\user_[0-9a-f]{8}\\bin\r", detail)
    assert re.fullmatch(r"host_[0-9a-f]{8}\\user_[0-9a-f]{8}", rows[1][7])
    assert re.fullmatch(
        r'"C:\\Users\\user_[0-9a-f]{8}\\Downloads\\name_[0-9a-f]{10}\.exe" --token arg_[0-9a-f]{8} -v',
        rows[1][8],
    )
    assert rows[2][7] == "NT AUTHORITY\\SYSTEM"
    assert re.fullmatch(r"HKU\\S-1-5-21-\d+-\d+-\d+-1001_Classes\\Software", rows[2][4])
    assert {"user", "computer", "sid", "cmdline", "env"} <= set(result.counts)


def test_network_hosts_ips_emails_and_unc_servers(tmp_path):
    rows, result = redact_rows(
        tmp_path,
        [
            row(
                1,
                "chrome.exe",
                "TCP Receive",
                "DESKTOP-FR51PUU:60791 -> 140.82.112.4:https",
                detail="Length: 1555, seqnum: 0, connid: 0",
            ),
            row(
                2,
                "chrome.exe",
                "TCP Send",
                "DESKTOP-FR51PUU.corp.example.com:60792 -> 127.0.0.1:8888",
            ),
            row(3, "Explorer.EXE", "CreateFile", "\\\\fileserver\\team\\plan.docx", detail=CREATE),
            row(
                4,
                "OUTLOOK.EXE",
                "RegQueryValue",
                "HKCU\\Software\\Microsoft\\Office\\Outlook\\Profile",
                detail="Type: REG_SZ, Length: 40, Data: bob.smith@example.org",
            ),
        ],
    )
    address = re.fullmatch(r"host_[0-9a-f]{8}:60791 -> ([\d.]+):https", rows[1][4])
    assert address and ipaddress.ip_address(address.group(1)).is_global  # public stays public
    host = rows[1][4].split(":")[0]
    assert rows[2][4].startswith(host + ".domain_") and rows[2][4].endswith("-> 127.0.0.1:8888")
    assert re.fullmatch(
        r"\\\\server_[0-9a-f]{8}\\name_[0-9a-f]{10}\\name_[0-9a-f]{10}\.docx", rows[3][4]
    )
    assert re.search(r"Data: email_[0-9a-f]{8}@example\.invalid$", rows[4][6])
    assert {"computer", "domain", "ip", "unc", "email"} <= set(result.counts)
    assert rows[1][6] == "Length: 1555, seqnum: 0, connid: 0"


def test_query_directory_listing_names_match_the_paths_they_stand_for(tmp_path):
    rows, _ = redact_rows(
        tmp_path,
        [
            row(
                1,
                "Explorer.EXE",
                "QueryDirectory",
                "C:\\Users\\test",
                detail="Filter: test, 2: test, FileInformationClass: FileBothDirectoryInformation",
            ),
            row(
                2,
                "Explorer.EXE",
                "QueryDirectory",
                "C:\\Users",
                detail="Filter: Users, 1: Users, FileInformationClass: FileBothDirectoryInformation",
            ),
        ],
    )
    user = rows[1][4].split("\\")[-1]
    assert (
        rows[1][6]
        == f"Filter: {user}, 2: {user}, FileInformationClass: FileBothDirectoryInformation"
    )
    assert (
        rows[2][6] == "Filter: Users, 1: Users, FileInformationClass: FileBothDirectoryInformation"
    )


def test_secret_words_are_replaced_anywhere_even_inside_words(tmp_path):
    rows, result = redact_rows(
        tmp_path,
        [
            row(
                1,
                "Code.exe",
                "CreateFile",
                "C:\\Program Files\\AcmeCorp\\acmecorp-agent.exe",
                detail=CREATE,
            )
        ],
        secrets=["ACMECORP"],
    )
    assert "acmecorp" not in json.dumps(rows).lower()
    assert re.fullmatch(
        r"C:\\Program Files\\secret_[0-9a-f]{8}\\secret_[0-9a-f]{8}-agent\.exe", rows[1][4]
    )
    assert result.counts["secret"] == 1


def test_keep_path_keeps_names_but_not_users(tmp_path):
    rows, result = redact_rows(tmp_path, BASIC, keep=["path"])
    assert re.fullmatch(r"C:\\Users\\user_[0-9a-f]{8}\\Documents\\notes\\file\.txt", rows[1][4])
    assert rows[5][1] == "secret-tool.exe"
    assert result.kept == ("path",) and "path" not in result.counts


def test_keep_user_keeps_user_names(tmp_path):
    rows, _ = redact_rows(tmp_path, BASIC, keep=["user"])
    assert rows[1][4].startswith("C:\\Users\\Bob\\Documents\\name_")


def test_every_class_can_be_kept():
    assert CLASSES == (
        "user",
        "computer",
        "domain",
        "sid",
        "email",
        "ip",
        "unc",
        "cmdline",
        "env",
        "path",
    )


# --------------------------------------------------------------------------- keys


def test_same_key_gives_identical_bytes_and_another_key_other_pseudonyms(tmp_path):
    source = write(tmp_path / "in.csv", csv_text(BASIC))
    a, b, c = (tmp_path / f"{n}.csv" for n in "abc")
    redact(source, a, key=KEY)
    redact(source, b, key=KEY)
    redact(source, c, key=OTHER_KEY)
    assert a.read_bytes() == b.read_bytes()
    user_a = rows_of(a)[1][4].split("\\")[2]
    user_c = rows_of(c)[1][4].split("\\")[2]
    assert user_a != user_c and user_a.startswith("user_") and user_c.startswith("user_")


def test_pseudonyms_line_up_across_files_with_the_same_key(tmp_path):
    one = write(tmp_path / "one.csv", csv_text(BASIC[:2]))
    two = write(tmp_path / "two.csv", csv_text(BASIC[2:4]))
    redact(one, tmp_path / "one.out.csv", key=KEY)
    redact(two, tmp_path / "two.out.csv", key=KEY)
    folder_one = rows_of(tmp_path / "one.out.csv")[1][4].rsplit("\\", 1)[0]
    folder_two = rows_of(tmp_path / "two.out.csv")[1][4]
    assert folder_one.lower() == folder_two.lower()


def test_key_file_is_created_once_then_reused(tmp_path):
    source = write(tmp_path / "in.csv", csv_text(BASIC))
    key_file = tmp_path / "redact.key"
    first = redact(source, tmp_path / "a.csv", key=key_file)
    assert first.key_created and first.key == "file"
    assert re.fullmatch(r"[0-9a-f]{64}\n", key_file.read_text(encoding="ascii"))
    second = redact(source, tmp_path / "b.csv", key=key_file)
    assert not second.key_created
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert key_file.read_text(encoding="ascii").strip() not in (tmp_path / "a.csv").read_text(
        encoding="utf-8-sig"
    )


def test_without_a_key_a_one_off_key_is_used(tmp_path):
    source = write(tmp_path / "in.csv", csv_text(BASIC))
    result = redact(source, tmp_path / "a.csv")
    redact(source, tmp_path / "b.csv")
    assert result.key == "one-off" and result.key_file is None
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "b.csv").read_bytes()


def test_map_file_holds_the_originals(tmp_path):
    rows, _ = redact_rows(tmp_path, BASIC, map_path=tmp_path / "map.json")
    table = json.loads((tmp_path / "map.json").read_text(encoding="utf-8"))["classes"]
    user = rows[1][4].split("\\")[2]
    assert table["user"][user] == "Bob"
    assert "notes" in table["path"].values()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_map_file_is_readable_by_its_owner_only(tmp_path):
    map_path = tmp_path / "map.json"
    map_path.write_text("an older, world-readable map", encoding="utf-8")
    os.chmod(map_path, 0o644)
    old_umask = os.umask(0o022)
    try:
        redact_rows(tmp_path, BASIC, map_path=map_path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(map_path.stat().st_mode) == 0o600
    assert json.loads(map_path.read_text(encoding="utf-8"))["classes"]["user"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "map.json", "out.csv"]


PATH_PART = st.one_of(
    st.sampled_from(
        [
            "Users",
            "bob",
            "Bob",
            "AppData",
            "Local",
            "Temp",
            "notes",
            "NOTES",
            "x",
            "x.txt",
            "X.TXT",
            ".tmpAbC123",
            ".tmpabc123",
            "f85683082b98592e",
            "{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}",
            "site-packages",
            "Windows",
            "a.tar.gz",
            "a",
            "12",
            "name_0123456789",
            "user_01234567",
        ]
    ),
    st.text(alphabet="abcXYZ019._- ", min_size=1, max_size=8).filter(lambda s: s.strip(" .") == s),
)
PATHS = st.lists(
    st.lists(PATH_PART, min_size=1, max_size=5).map(lambda parts: "C:\\" + "\\".join(parts)),
    min_size=2,
    max_size=25,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(paths=PATHS)
def test_distinct_paths_stay_distinct_and_the_tree_survives(tmp_path, paths):
    rows = [row(i, "Code.exe", "CreateFile", p, detail=CREATE) for i, p in enumerate(paths)]
    out, _ = redact_rows(tmp_path, rows)
    mapped = [r[4] for r in out[1:]]
    for a, ra in zip(paths, mapped, strict=True):
        assert a.count("\\") == ra.count("\\")
        for b, rb in zip(paths, mapped, strict=True):
            assert (a.lower() == b.lower()) == (ra.lower() == rb.lower()), (a, b, ra, rb)
            below = b.lower().startswith(a.lower() + "\\")
            assert below == rb.lower().startswith(ra.lower() + "\\"), (a, b, ra, rb)


# --------------------------------------------------------------------------- the file stays itself


def test_procmon_dialect_is_kept_byte_for_byte_where_nothing_is_secret(tmp_path):
    rows = [
        row(
            1,
            "svchost.exe",
            "ReadFile",
            "C:\\Windows\\System32\\config\\SOFTWARE",
            detail='Offset: 4,096, Length: 512, Note: "quoted"',
        )
    ]
    text = csv_text(rows)
    source = write(tmp_path / "in.csv", text)
    redact(source, tmp_path / "out.csv", key=KEY)
    assert (tmp_path / "out.csv").read_bytes() == source.read_bytes()


@pytest.mark.parametrize(
    ("quoted", "delimiter", "end", "encoding", "word"),
    [
        (True, ",", "\r\n", "utf-8-sig", "Документы"),
        (False, ",", "\r\n", "utf-8", "résumé"),
        (False, ";", "\n", "cp1252", "résumé"),
        (False, "\t", "\r\n", "cp1251", "Документы"),
        (True, ",", "\n", "utf-16", "文档"),
        (False, ",", "\r", "utf-8-sig", "résumé"),
    ],
)
def test_quoting_delimiter_line_ends_and_encoding_survive(
    tmp_path, quoted, delimiter, end, encoding, word
):
    detail = "Parent PID: 1, Command line: x.exe, Current directory: C:\\Users\\Bob\\, Environment: \r;\tUSERNAME=Bob\r;\tOS=Windows_NT"
    rows = [
        row(1, "Code.exe", "CreateFile", f"C:\\Users\\Bob\\{word}\\{word}.txt", detail=CREATE),
        row(2, "x.exe", "Process Start", "", detail=detail),
        row(3, "Code.exe", "CloseFile", "C:\\Windows\\a, b.txt"),
    ]
    text = csv_text(rows, quoted=quoted, delimiter=delimiter, end=end)
    source = write(tmp_path / "in.csv", text, encoding)
    out = tmp_path / "out.csv"
    result = redact(source, out, key=KEY)
    data = out.read_bytes()
    bom = {"utf-8-sig": b"\xef\xbb\xbf", "utf-16": source.read_bytes()[:2]}.get(encoding, b"")
    assert data.startswith(bom) and not data[len(bom) :].startswith((b"\xef", b"\xff", b"\xfe"))
    written = data.decode(encoding)
    assert written.split(end)[0] == text.split(end)[0]  # the header line, as it was
    assert written.split(end)[1].startswith(
        '"7:19:00.0000001 AM"' if quoted else "7:19:00.0000001 AM"
    )
    assert "Bob" not in written and word not in written
    assert "\r;\tOS=Windows_NT" in written
    assert written.count(end) == text.count(end)
    parsed = list(
        csv.reader(io.StringIO(written.lstrip("\ufeff"), newline=""), delimiter=delimiter)
    )
    assert parsed[3][4] == "C:\\Windows\\a, b.txt" and len(parsed) == 4
    assert result.rows == 3
    assert load_trace(out).events.height == load_trace(source).events.height


def test_missing_final_line_end_stays_missing(tmp_path):
    text = csv_text(BASIC[:2]).rstrip("\r\n")
    source = write(tmp_path / "in.csv", text)
    redact(source, tmp_path / "out.csv", key=KEY)
    assert not (tmp_path / "out.csv").read_bytes().endswith(b"\n")


def test_gzip_and_zip_inputs_give_the_same_compression(tmp_path):
    text = csv_text(BASIC)
    gz = tmp_path / "in.csv.gz"
    gz.write_bytes(gzip.compress(text.encode("utf-8-sig")))
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Bob-Logfile.CSV", text.encode("utf-8-sig"))
        z.writestr("README.txt", "notes by Bob")
    result_gz = redact(gz, tmp_path / "out.csv.gz", key=KEY)
    result_zip = redact(archive, tmp_path / "out.zip", key=KEY)
    plain = gzip.decompress((tmp_path / "out.csv.gz").read_bytes())
    assert result_gz.compression == "gzip" and b"Bob" not in plain
    with zipfile.ZipFile(tmp_path / "out.zip") as z:
        names = z.namelist()
        content = z.read(names[0])
    assert result_zip.compression == "zip" and len(names) == 1 and "Bob" not in names[0]
    assert content == plain
    assert any("left out: README.txt" in note for note in result_zip.notes)
    assert load_trace(tmp_path / "out.zip").events.height == len(BASIC)


def test_pasted_rows_stay_pasted_rows(tmp_path):
    source = SAMPLES / "uv-issue-pasted.tsv"
    text = "```\n" + source.read_text(encoding="utf-8") + "```\n"
    pasted = write(tmp_path / "pasted.tsv", text, "utf-8")
    result = redact(pasted, tmp_path / "out.tsv", key=KEY)
    written = (tmp_path / "out.tsv").read_text(encoding="utf-8")
    assert result.format == "procmon-clipboard" and result.rows == 42
    assert written.startswith("```\n") and written.endswith("```\n")
    assert "username" not in written and "conan" not in written
    lines = written.splitlines()
    assert [len(line.split("\t")) for line in lines[1:-1]] == [
        len(x.split("\t")) for x in text.splitlines()[1:-1]
    ]


def test_pasted_environment_lines_are_redacted(tmp_path):
    text = (
        "6:49:41.5073054 PM\tbanload1.exe\t5604\tProcess Start\t\tSUCCESS\tParent PID: 4620, "
        "Command line: banload1.exe, Current directory: C:\\Users\\IEUser\\, Environment: \n"
        ";\tCOMPUTERNAME=MSEDGEWIN10\n;\tUSERPROFILE=C:\\Users\\IEUser\n"
    )
    pasted = write(tmp_path / "pasted.tsv", text, "utf-8")
    redact(pasted, tmp_path / "out.tsv", key=KEY)
    written = (tmp_path / "out.tsv").read_text(encoding="utf-8")
    assert "IEUser" not in written and "MSEDGEWIN10" not in written
    assert re.search(
        r"\n;\tCOMPUTERNAME=host_[0-9a-f]{8}\n;\tUSERPROFILE=C:\\Users\\user_", written
    )


def test_procmon_xml_is_rewritten_in_place(tmp_path):
    xml = (
        '\ufeff<?xml version="1.0" encoding="UTF-8"?>\r\n<procmon><processlist><process>\r\n'
        "<ProcessIndex>1</ProcessIndex>\r\n<Owner>DESKTOP-0BT2R3R\\Epicmine</Owner>\r\n"
        "<ProcessName>tool.exe</ProcessName>\r\n<ImagePath>C:\\Users\\Epicmine\\tool.exe</ImagePath>\r\n"
        "<CommandLine>&quot;C:\\Users\\Epicmine\\tool.exe&quot; --name Epicmine</CommandLine>\r\n"
        "<modulelist>\r\n<module>\r\n<Path>C:\\Windows\\System32\\ntdll.dll</Path>\r\n"
        "<Company>Microsoft Corporation</Company>\r\n</module>\r\n</modulelist>\r\n</process>\r\n"
        "</processlist>\r\n<eventlist>\r\n<event>\r\n<ProcessIndex>1</ProcessIndex>\r\n"
        "<Time_of_Day>19:04:47,3955378</Time_of_Day>\r\n<Process_Name>tool.exe</Process_Name>\r\n"
        "<PID>6824</PID>\r\n<Operation>CreateFile</Operation>\r\n"
        "<Path>C:\\Users\\Epicmine\\a &amp; b.txt</Path>\r\n<Result>SUCCESS</Result>\r\n"
        f"<Detail>{CREATE}</Detail>\r\n</event>\r\n</eventlist></procmon>"
    )
    source = write(tmp_path / "Logfile.XML", xml, "utf-8")
    result = redact(source, tmp_path / "out.xml", key=KEY)
    written = (tmp_path / "out.xml").read_bytes().decode("utf-8")
    assert result.format == "procmon-xml" and result.rows == 1
    assert "Epicmine" not in written and "0BT2R3R" not in written
    assert written.startswith('\ufeff<?xml version="1.0" encoding="UTF-8"?>\r\n<procmon>')
    assert "<Path>C:\\Windows\\System32\\ntdll.dll</Path>" in written
    assert re.search(r"<Path>C:\\Users\\user_[0-9a-f]{8}\\name_[0-9a-f]{10}\.txt</Path>", written)
    assert re.search(
        r"<CommandLine>&quot;C:\\Users\\user_[0-9a-f]{8}\\name_[0-9a-f]{10}\.exe&quot; --name user_",
        written,
    )
    assert load_trace(tmp_path / "out.xml").events.height == 1


# --------------------------------------------------------------------------- command line


def test_cli_redacts_and_says_what_it_did(tmp_path):
    source = write(tmp_path / "in.csv", csv_text(BASIC))
    key_file = tmp_path / "redact.key"
    result = CliRunner().invoke(
        main,
        [
            "redact",
            str(source),
            "-o",
            str(tmp_path / "out.csv"),
            "--key-file",
            str(key_file),
            "--secret",
            "myproject",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"created key file {key_file}: keep it private" in result.stderr
    assert re.search(
        r"wrote .*out\.csv \(procmon-csv, 7 rows\); replaced: .*1 user.*; leak check passed\.",
        result.stderr,
    )
    again = CliRunner().invoke(
        main, ["redact", str(source), "-o", str(tmp_path / "out2.csv"), "--json"]
    )
    assert "no --key-file: used a one-off random key" in again.stderr
    assert json.loads(again.stdout)["leak_check"] == "passed"


def test_cli_secret_file(tmp_path):
    source = write(tmp_path / "in.csv", csv_text(BASIC))
    words = tmp_path / "words.txt"
    words.write_text("# project names\nmyproject\n\n", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        [
            "redact",
            str(source),
            "-o",
            str(tmp_path / "out.csv"),
            "--secret-file",
            str(words),
            "--keep",
            "path",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "myproject" not in (tmp_path / "out.csv").read_text(encoding="utf-8-sig").lower()


# --------------------------------------------------------------------------- leak check


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 11, 64])
def test_leak_check_reads_the_output_back_in_chunks(tmp_path, monkeypatch, chunk):
    from traceaudit.redaction import check as _redact_check
    from traceaudit.redaction.check import Leak, find_leaks_in_file
    from traceaudit.redaction.context import Secret
    from traceaudit.redaction.handlers import Source

    monkeypatch.setattr(_redact_check, "_CHUNK", chunk)
    text = "Bobcat one\nmy bobcat\nthe BOB was\nconcatenate\n"
    path = write(tmp_path / "out.csv", text, "utf-8")
    source = Source(path, "out.csv", "procmon-csv", text, "utf-8", b"")
    secrets = [Secret("user", "bob"), Secret("secret", "CAT"), Secret("computer", "was")]
    assert find_leaks_in_file(path, source, secrets) == [
        Leak("secret", "CAT", 1),
        Leak("user", "bob", 3),
        Leak("computer", "was", 3),
    ]
    assert find_leaks_in_file(path, source, [Secret("user", "bobca")]) == []


# --------------------------------------------------------------------------- every class is checked

PLANTED_START = (
    'Parent PID: 4, Command line: "C:\\Users\\alice\\zephyrproject\\python.exe" --token '
    "s3cr3tvalue --server 10.23.45.67, Current directory: C:\\Users\\alice\\, Environment: "
    "\r;\tCOMPUTERNAME=WKSTN-ORION\r;\tUSERDOMAIN=CONTOSO\r;\tBUILD_TOKEN=hunter2hunter2"
)
PLANTED = [
    row(1, "python.exe", "Process Start", "", detail=PLANTED_START, User="CONTOSO\\alice"),
    row(
        2,
        "python.exe",
        "RegOpenKey",
        "HKU\\S-1-5-21-1111111111-2222222222-3333333333-1001\\Software",
        detail="Desired Access: Read",
        User="CONTOSO\\alice",
    ),
    row(
        3,
        "python.exe",
        "RegQueryValue",
        "HKCU\\Software\\Mail\\Account",
        detail="Type: REG_SZ, Length: 40, Data: carol.jones@fabrikam.org",
        User="CONTOSO\\alice",
    ),
    row(
        4,
        "python.exe",
        "CreateFile",
        "\\\\fileserver7\\C$\\Windows\\win.ini",
        User="CONTOSO\\alice",
    ),
    row(
        5,
        "python.exe",
        "RegQueryValue",
        "HKCU\\Software\\Build\\Name",
        detail="Type: REG_SZ, Length: 20, Data: Bluebird release",
        User="CONTOSO\\alice",
    ),
]
"""One secret of each class, each where its rule finds it."""
PLANTED_SECRETS = {
    "user": "alice",
    "computer": "WKSTN-ORION",
    "domain": "CONTOSO",
    "sid": "S-1-5-21-1111111111-2222222222-3333333333",
    "email": "carol.jones@fabrikam.org",
    "ip": "10.23.45.67",
    "unc": "fileserver7",
    "cmdline": "s3cr3tvalue",
    "env": "hunter2hunter2",
    "path": "zephyrproject",
    "secret": "Bluebird",
}
PLANTED_COLUMNS = (*COLUMNS, "User")


def test_one_secret_of_each_class_is_replaced_and_none_survives(tmp_path):
    rows, result = redact_rows(tmp_path, PLANTED, PLANTED_COLUMNS, secrets=["Bluebird"])
    written = json.dumps(rows).lower()
    for cls, secret in PLANTED_SECRETS.items():
        assert secret.lower() not in written, cls
    assert result.counts == {cls: 1 for cls in sorted(PLANTED_SECRETS)}
    assert set(PLANTED_SECRETS) == {*CLASSES, "secret"}


def test_the_leak_check_looks_for_every_class():
    from traceaudit.redaction.check import find_leaks
    from traceaudit.redaction.context import Secret

    text = "\n".join(f"{cls} -> {secret}" for cls, secret in PLANTED_SECRETS.items())
    secrets = [Secret(cls, secret) for cls, secret in PLANTED_SECRETS.items()]
    found = find_leaks(text.upper(), secrets)  # case-insensitively
    assert [(leak.kind, leak.line) for leak in found] == [
        (cls, n) for n, cls in enumerate(PLANTED_SECRETS, start=1)
    ]


def test_a_secret_that_is_a_word_of_the_untouched_columns_is_replaced_where_it_stands(tmp_path):
    """A user called Path in a trace with PATH NOT FOUND results: the Result column is
    never rewritten, so the name is replaced where the structure says it is a user only."""
    rows, _ = redact_rows(
        tmp_path,
        [
            row(
                1,
                "Code.exe",
                "CreateFile",
                "C:\\Users\\Path\\x.txt",
                "PATH NOT FOUND",
                User="CORP\\Path",
            )
        ],
        (*COLUMNS, "User"),
    )
    assert re.fullmatch(r"C:\\Users\\user_[0-9a-f]{8}\\name_[0-9a-f]{10}\.txt", rows[1][4])
    assert rows[1][5] == "PATH NOT FOUND"
    assert re.fullmatch(r"domain_[0-9a-f]{8}\\user_[0-9a-f]{8}", rows[1][7])


def test_a_file_name_that_software_also_uses_is_replaced_as_a_name_only(tmp_path):
    """C:\\Program (Windows tries it for an unquoted command line) is a file name;
    Program Files must stay Program Files, and --enable-features stays an option."""
    rows, _ = redact_rows(
        tmp_path,
        [
            row(1, "cmd.exe", "CreateFile", "C:\\Program", "NAME NOT FOUND"),
            row(2, "cmd.exe", "CreateFile", "C:\\Program Files\\Git\\cmd\\git.exe"),
            row(3, "cmd.exe", "CreateFile", "C:\\Users\\bob\\Features\\a.txt"),
            row(
                4,
                "msedge.exe",
                "Process Start",
                "",
                detail="Parent PID: 1, Command line: msedge.exe --enable-features=Foo, Current "
                "directory: C:\\Windows\\",
            ),
        ],
    )
    assert re.fullmatch(r"C:\\name_[0-9a-f]{10}", rows[1][4])
    assert rows[2][4] == "C:\\Program Files\\Git\\cmd\\git.exe"
    assert re.fullmatch(
        r"C:\\Users\\user_[0-9a-f]{8}\\name_[0-9a-f]{10}\\name_\w+\.txt", rows[3][4]
    )
    assert "msedge.exe --enable-features=arg_" in rows[4][6]


def test_secrets_inside_an_option_name_are_replaced(tmp_path):
    rows, _ = redact_rows(
        tmp_path,
        [
            row(1, "Code.exe", "CreateFile", "C:\\Users\\zoltan\\a.txt"),
            row(
                2,
                "tool.exe",
                "Process Start",
                "",
                detail="Parent PID: 1, Command line: tool.exe --profile-zoltan=1, Current "
                "directory: C:\\Windows\\",
            ),
        ],
    )
    user = rows[1][4].split("\\")[2]
    assert f"--profile-{user}=1" in rows[2][6] and "zoltan" not in rows[2][6]


def test_secret_words_inside_every_pseudonym_get_plain_hex_pseudonyms(tmp_path):
    """'ser' is in every user_… pseudonym, '10.' in every 10/8 address, 'omai' in every
    domain_…: the search falls back to plain keyed hex instead of giving up."""
    map_path = tmp_path / "map.json"
    rows, result = redact_rows(tmp_path, PLANTED, secrets=["ser", "10.", "omai"], map_path=map_path)
    written = json.dumps(rows[1:]).lower()
    for word in ("ser", "10.", "omai"):
        assert word not in written
    table = json.loads(map_path.read_text(encoding="utf-8"))["classes"]
    assert [re.fullmatch(r"[0-9a-f]{16}", fake) is not None for fake in table["user"]] == [True]
    assert [re.fullmatch(r"[0-9a-f]{16}", fake) is not None for fake in table["ip"]] == [True]
    assert result.counts["user"] == result.counts["ip"] == 1
