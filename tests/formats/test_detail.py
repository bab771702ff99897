"""The Detail grammar of docs/formats.md §1.4, case by case, and what unknown keys do."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from traceaudit.formats import DETAIL_SCHEMA, parse_detail
from traceaudit.schema import ACCESS_BITS, CREATE_OPTION_BITS


def parsed(operation: str, detail: str | None) -> dict[str, Any]:
    """The typed Detail columns of a single row."""
    frame = pl.DataFrame(
        {"operation": [operation], "detail": [detail]},
        schema={"operation": pl.String, "detail": pl.String},
    )
    return parse_detail(frame).drop("operation", "detail").row(0, named=True)


def only(row: dict[str, Any], **expected: Any) -> None:
    """``row`` has exactly ``expected`` set and every other Detail column null."""
    assert {k: v for k, v in row.items() if v is not None} == expected


def bits(table: dict[str, int], *names: str) -> int:
    mask = 0
    for name in names:
        mask |= table[name]
    return mask


def test_createfile_full() -> None:
    row = parsed(
        "CreateFile",
        "Desired Access: Generic Write, Read Attributes, Disposition: OpenIf, Options: "
        "Synchronous IO Non-Alert, Non-Directory File, Disallow Exclusive, Attributes: N, "
        "ShareMode: Read, Write, AllocationSize: 0, Impersonating: HOST\\user, "
        "OpenResult: Superseded",
    )
    only(
        row,
        access_mask=bits(ACCESS_BITS, "Generic Write", "Read Attributes"),
        share_mode=0b011,
        disposition="OpenIf",
        create_options=bits(
            CREATE_OPTION_BITS,
            "Synchronous IO Non-Alert",
            "Non-Directory File",
            "Disallow Exclusive",
        ),
        is_directory=False,
        delete_on_close=False,
        open_result="Superseded",
    )


def test_createfile_failed_has_no_open_result_and_empty_options() -> None:
    row = parsed(
        "CreateFile",
        "Desired Access: Read Attributes, Delete, Synchronize, Disposition: Open, Options: , "
        "Attributes: n/a, ShareMode: None, AllocationSize: n/a",
    )
    only(
        row,
        access_mask=0x00010000 | 0x0080 | 0x00100000,
        share_mode=0,
        disposition="Open",
        create_options=0,
        delete_on_close=False,
    )


def test_createfile_directory_with_slash_names() -> None:
    row = parsed(
        "CreateFile",
        "Desired Access: Read Data/List Directory, Synchronize, Disposition: Open, Options: "
        "Directory, Synchronous IO Non-Alert, Attributes: n/a, ShareMode: Read, Write, Delete, "
        "AllocationSize: n/a, OpenResult: Opened",
    )
    assert row["access_mask"] == 0x0001 | 0x00100000
    assert row["share_mode"] == 0b111
    assert row["is_directory"] is True
    assert row["create_options"] == 0x1 | 0x20


def test_createfile_delete_on_close() -> None:
    row = parsed(
        "CreateFile",
        "Desired Access: Generic Read/Write, Delete, Disposition: Create, Options: Delete On "
        "Close, Non-Directory File, Attributes: N, ShareMode: Delete, AllocationSize: 0, "
        "OpenResult: Created",
    )
    assert row["access_mask"] == 0xC0000000 | 0x00010000
    assert row["share_mode"] == 0b100
    assert row["delete_on_close"] is True
    assert row["open_result"] == "Created"


@pytest.mark.parametrize(
    ("operation", "detail", "offset", "length"),
    [
        (
            "WriteFile",
            "Offset: 57,344, Length: 4,096, I/O Flags: Write Through, Priority: Normal",
            57_344,
            4_096,
        ),
        (
            "ReadFile",
            "Offset: 41,971,712, Length: 88, I/O Flags: Non-cached, Paging I/O, Synchronous Paging I/O, Priority: Normal",
            41_971_712,
            88,
        ),
        ("WriteFile", "Offset: 8,192, Length: 8,047", 8_192, 8_047),
        ("ReadFile", "Offset: 0, Length: 13,385,728, Priority: Normal", 0, 13_385_728),
        (
            "LockFile",
            "Exclusive: True, Offset: 2,147,483,538, Length: 1, Fail Immediately: True",
            2_147_483_538,
            1,
        ),
        ("UnlockFileSingle", "Offset: 2,147,483,538, Length: 1", 2_147_483_538, 1),
        # Localised thousands separators: dot, space, no-break space, narrow no-break space.
        ("ReadFile", "Offset: 5.242.880, Length: 4.096", 5_242_880, 4_096),
        ("ReadFile", "Offset: 5 242 880, Length: 4\u00a0096", 5_242_880, 4_096),
        ("WriteFile", "Offset: 5\u202f242\u202f880, Length: 1", 5_242_880, 1),
        ("ReadFile", "Offset: 5'242'880, Length: 7", 5_242_880, 7),
    ],
)
def test_offsets_and_lengths(operation: str, detail: str, offset: int, length: int) -> None:
    only(parsed(operation, detail), offset=offset, length=length)


def test_rename_target_and_replace_flag() -> None:
    row = parsed(
        "SetRenameInformationFile",
        "ReplaceIfExists: False, FileName: C:\\Users\\x\\Desktop\\inventory.csv.WNCRY",
    )
    only(row, rename_target="C:\\Users\\x\\Desktop\\inventory.csv.WNCRY", replace_if_exists=False)


def test_rename_target_may_contain_commas() -> None:
    row = parsed("SetRenameInformationFile", "ReplaceIfExists: True, FileName: C:\\a, b\\c.txt")
    only(row, rename_target="C:\\a, b\\c.txt", replace_if_exists=True)


def test_rename_ex_shows_flags() -> None:
    row = parsed(
        "SetRenameInformationEx",
        "Flags: FILE_RENAME_REPLACE_IF_EXISTS, FILE_RENAME_SUPPRESS_PIN_STATE_INHERITANCE, "
        "FileName: C:\\Users\\ts\\x.customDestinations-ms",
    )
    only(row, rename_target="C:\\Users\\ts\\x.customDestinations-ms", replace_if_exists=True)
    row = parsed("SetRenameInformationEx", "Flags: FILE_RENAME_POSIX_SEMANTICS, FileName: C:\\y")
    only(row, rename_target="C:\\y", replace_if_exists=False)


def test_link_information_is_a_rename_target() -> None:
    row = parsed("SetLinkInformationFile", "ReplaceIfExists: True, FileName: C:\\l\\hard.lnk")
    only(row, rename_target="C:\\l\\hard.lnk", replace_if_exists=True)


@pytest.mark.parametrize(
    ("operation", "detail", "flag"),
    [
        ("SetDispositionInformationFile", "Delete: True", True),
        ("SetDispositionInformationFile", "Delete: False", False),
        (
            "SetDispositionInformationEx",
            "Flags: FILE_DISPOSITION_DELETE, FILE_DISPOSITION_POSIX_SEMANTICS, "
            "FILE_DISPOSITION_FORCE_IMAGE_SECTION_CHECK",
            True,
        ),
        ("SetDispositionInformationEx", "Flags: FILE_DISPOSITION_DO_NOT_DELETE", False),
        (
            "SetDispositionInformationEx",
            "Flags: FILE_DISPOSITION_DELETE | FILE_DISPOSITION_ON_CLOSE",
            True,
        ),
        ("SetDispositionInformationEx", "Flags: 0x3", True),
        ("SetDispositionInformationEx", "Flags: 0x2", False),
    ],
)
def test_delete_flag(operation: str, detail: str, flag: bool) -> None:
    only(parsed(operation, detail), delete_flag=flag)


@pytest.mark.parametrize(
    ("operation", "detail"),
    [
        ("CloseFile", ""),
        (
            "QueryStandardInformationFile",
            "AllocationSize: 249,856, EndOfFile: 246,784, NumberOfLinks: 2, DeletePending: False, Directory: False",
        ),
        ("QueryNameInformationFile", "Name: \\Windows\\explorer.exe"),
        (
            "CreateFileMapping",
            "SyncType: SyncTypeCreateSection, PageProtection: PAGE_EXECUTE_READ|PAGE_NOCACHE",
        ),
        ("RegOpenKey", "Desired Access: Query Value"),  # registry access is not a file mask
        ("RegQueryValue", "Type: REG_DWORD, Length: 4, Data: 0"),
        ("CreateFile", None),
    ],
)
def test_operations_without_typed_detail(operation: str, detail: str | None) -> None:
    only(parsed(operation, detail))


def test_unknown_keys_and_names_are_ignored() -> None:
    row = parsed(
        "CreateFile",
        "Desired Access: Generic Read, Frobnicate Data, Disposition: Open, Future Key: 5, "
        "Options: Delete On Close, Brand New Option, Attributes: n/a, ShareMode: Read, Sideways, "
        "AllocationSize: n/a, OpenResult: Opened, Extra: 1",
    )
    only(
        row,
        access_mask=0x80000000,
        share_mode=1,
        disposition="Open",
        create_options=CREATE_OPTION_BITS["Delete On Close"],
        delete_on_close=True,
        open_result="Opened",
    )


def test_keys_in_another_order_and_hex_access() -> None:
    row = parsed(
        "CreateFile",
        "ShareMode: Write, OpenResult: Opened, Disposition: Overwrite, Desired Access: 0x2, "
        "Options: Random Access",
    )
    only(
        row,
        access_mask=0x2,
        share_mode=2,
        disposition="Overwrite",
        create_options=CREATE_OPTION_BITS["Random Access"],
        delete_on_close=False,
        open_result="Opened",
    )


def test_unknown_operation_and_garbage_never_fail() -> None:
    only(parsed("FrobnicateFile", "Desired Access: Generic Read"))
    only(parsed("CreateFile", "garbage, with: colons, and, commas"))
    only(parsed("ReadFile", "Offset: lots, Length: ?"))


def test_columns_and_types() -> None:
    frame = pl.DataFrame(
        {
            "operation": ["CreateFile", "ReadFile", "CloseFile"],
            "detail": ["", "Offset: 1, Length: 2", ""],
        }
    )
    out = parse_detail(frame)
    assert {name: out.schema[name] for name in DETAIL_SCHEMA} == DETAIL_SCHEMA
    assert out["offset"].to_list() == [None, 1, None]


def test_repeated_details_parse_like_distinct_ones() -> None:
    """The parse-each-distinct-value path gives the same answer as row by row."""
    details = [
        "Desired Access: Generic Read, Disposition: Open, Options: , Attributes: n/a, "
        f"ShareMode: Read, AllocationSize: {n % 3}, OpenResult: Opened"
        for n in range(400)
    ]
    frame = pl.DataFrame({"operation": ["CreateFile"] * 400, "detail": details})
    out = parse_detail(frame)
    assert out["access_mask"].unique().to_list() == [0x80000000]
    assert out["open_result"].unique().to_list() == ["Opened"]
    assert out.height == 400


def test_sparse_family_parses_like_a_dense_one() -> None:
    """Renames among many other rows (a sparse pick, packed before parsing) give the same
    values, nulls and row order as renames alone."""
    renames = [
        f"ReplaceIfExists: {'True' if n % 2 else 'False'}, FileName: C:\\out\\f{n}, copy.bin"
        for n in range(30)
    ]
    alone = parse_detail(
        pl.DataFrame({"operation": ["SetRenameInformationFile"] * 30, "detail": renames})
    )
    operations, details = [], []
    for rename in renames:
        operations += ["SetRenameInformationFile"] + ["ReadFile"] * 9
        details += [rename] + ["Offset: 0, Length: 4,096"] * 9
    sparse = parse_detail(pl.DataFrame({"operation": operations, "detail": details}))
    picked = sparse.filter(pl.col("operation") == "SetRenameInformationFile")
    assert picked.select("rename_target", "replace_if_exists").equals(
        alone.select("rename_target", "replace_if_exists")
    )
    assert picked["rename_target"][1] == "C:\\out\\f1, copy.bin"
    assert sparse.filter(pl.col("operation") == "ReadFile")["rename_target"].null_count() == 270
