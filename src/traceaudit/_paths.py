"""Windows path comparison, as polars expressions.

NTFS names are case-insensitive (case-preserving), and Procmon sometimes shows a directory
with a trailing backslash. Every comparison of paths in the analysis goes through
:func:`path_key`, so ``C:\\Temp\\A.DLL`` and ``c:\\temp\\a.dll`` are the same file.
"""

from __future__ import annotations

import polars as pl

SEP = "\\"


def path_key(column: str | pl.Expr = "path") -> pl.Expr:
    """Case-folded path with any trailing backslash removed (``C:\\`` stays as it is)."""
    expr = pl.col(column) if isinstance(column, str) else column
    folded = expr.str.to_lowercase()
    return (
        pl.when(folded.str.ends_with(SEP) & (folded.str.len_chars() > 3))
        .then(folded.str.strip_suffix(SEP))
        .otherwise(folded)
    )


def fold(path: str) -> str:
    """The same normalisation for one Python string (user input such as ``--path``)."""
    folded = path.lower()
    if folded.endswith(SEP) and len(folded) > 3:
        folded = folded[:-1]
    return folded
