"""Redaction keys and the keyed pseudonyms made with them.

Why keyed: a plain hash of a user name can be reversed by hashing a list of likely names
(presidio's unsalted ``hash`` operator has exactly that problem). An HMAC-SHA256 under a
secret key cannot, yet the same key gives the same pseudonym for the same secret in every
file, so traces from several machines of one owner still line up; another key gives
unlinkable output.

Key files hold 32 random bytes as 64 hex digits on one line. :func:`load_key` creates the
file when it does not exist yet (and says so through its return value).

:class:`Pseudonyms` hands out pseudonyms and keeps them *injective*: two different
originals (compared lower-cased, as Windows compares names) never get the same
pseudonym. A collision, rare by construction (40 bits and more), extends the pseudonym
(``name_3f2a9c81d0`` → ``name_3f2a9c81d0e4``) or re-derives a shaped one. A candidate that
contains a secret is refused the same way; when the fixed part of every candidate does
(``--secret omai`` is in every ``domain_…``, ``--secret 10.`` in every address in 10/8),
the search falls back, after :data:`SHAPED_TRIES` tries, to plain keyed hex digits
(``3f2a9c81d0e4b7a1``), which hold no fixed text. The search is bounded: should even
those keep hitting secrets, it stops with a :class:`UsageError` naming them. The table
of pseudonym → original is what ``--map`` writes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from traceaudit.errors import UsageError

__all__ = ["KEY_BYTES", "SHAPED_TRIES", "Pseudonyms", "load_key", "new_key"]

KEY_BYTES = 32
SHAPED_TRIES = 16
"""Candidates of the class's own shape tried before the plain hex fallback."""
_TRIES = 64
"""Candidates tried in all: the search never loops for ever."""
_DOMAIN = b"traceaudit-redact-v1\x00"
_HEX = set("0123456789abcdefABCDEF")


def new_key() -> bytes:
    """A fresh random key (for one-off redactions without a key file)."""
    return secrets.token_bytes(KEY_BYTES)


def load_key(path: str | os.PathLike[str]) -> tuple[bytes, bool]:
    """The key in ``path``, creating the file with a new random key if it does not exist.

    Returns ``(key, created)``. Raises :class:`UsageError` for a file that cannot be read
    or does not hold a key.
    """
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        return _create_key(file), True
    except IsADirectoryError:
        raise UsageError(f"{file}: is a folder, not a key file. Give a file path.") from None
    except OSError as exc:
        raise UsageError(
            f"{file}: cannot read the key file ({exc.strerror or exc}). Check its permissions."
        ) from None
    text = "".join(raw.decode("ascii", errors="replace").split())
    if len(text) != 2 * KEY_BYTES or not set(text) <= _HEX:
        raise UsageError(
            f"{file}: not a redaction key (expected {2 * KEY_BYTES} hex digits). Give the key "
            "file traceaudit redact created, or a path that does not exist yet to create one."
        )
    return bytes.fromhex(text), False


def _create_key(file: Path) -> bytes:
    key = new_key()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(file, flags, 0o600)
    except FileNotFoundError:
        raise UsageError(
            f"{file}: cannot create the key file: the folder {file.parent} does not exist."
        ) from None
    except OSError as exc:
        raise UsageError(f"{file}: cannot create the key file ({exc.strerror or exc}).") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.hex().encode("ascii") + b"\n")
    return key


class Pseudonyms:
    """Keyed, injective pseudonyms, and the private table of what they stand for.

    ``guard`` (set once the secrets are known) returns the secret a candidate contains,
    if any: such a candidate is refused, so a pseudonym can never trip the leak check.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise UsageError(f"a redaction key needs at least 16 bytes, not {len(key)}")
        self._key = key
        self._given: dict[tuple[str, str], str] = {}
        self._taken: dict[str, tuple[str, str]] = {}
        self.table: dict[str, dict[str, str]] = {}
        self.guard: Callable[[str], str | None] = lambda candidate: None

    def stream(self, lower: str, attempt: int, size: int) -> bytes:
        """``size`` keyed pseudo-random bytes for the lower-cased ``lower``."""
        seed = _DOMAIN + lower.encode("utf-8", "surrogatepass") + b"\x00" + str(attempt).encode()
        out = b""
        block = 0
        while len(out) < size:
            out += hmac.new(self._key, seed + block.to_bytes(4, "big"), hashlib.sha256).digest()
            block += 1
        return out[:size]

    def hexdigest(self, lower: str) -> str:
        """The keyed digest of ``lower`` as 64 hex digits (attempt 0)."""
        return self.stream(lower, 0, 32).hex()

    def assign(
        self, cls: str, original: str, make: Callable[[str, int], str], *, group: str = ""
    ) -> str:
        """The pseudonym of ``original`` in class ``cls``, made by ``make(lower, attempt)``.

        The same lower-cased original (in the same ``group``, default the class) always
        gets the same pseudonym; a candidate whose lower-cased form is already taken by
        another original, or that contains a secret, is replaced by ``make(lower, n + 1)``,
        and after :data:`SHAPED_TRIES` of those by plain keyed hex digits. Raises
        :class:`UsageError` (never loops for ever) when no candidate is free of secrets.
        """
        lower = original.lower()
        ident = (group or cls, lower)
        given = self._given.get(ident)
        if given is not None:
            return given
        hits: list[str] = []
        for attempt in range(_TRIES):
            if attempt < SHAPED_TRIES:
                candidate = make(lower, attempt)
            else:
                candidate = self.stream(lower, attempt, 8).hex()
            owner = self._taken.get(candidate.lower())
            if owner is not None and owner != ident:
                continue
            hit = self.guard(candidate)
            if hit is None:
                break
            if hit not in hits:
                hits.append(hit)
        else:
            if not hits:  # pragma: no cover - 64 keyed candidates all taken
                raise UsageError(f"no free pseudonym for a {cls} value in {_TRIES} candidates.")
            shown = ", ".join(repr(h) for h in hits[:3]) + (", …" if len(hits) > 3 else "")
            raise UsageError(
                f"no pseudonym for a {cls} value is free of the secrets: all {_TRIES} "
                f"candidates contained one ({shown}). Give longer, more specific --secret "
                "words."
            )
        self._given[ident] = candidate
        self._taken[candidate.lower()] = ident
        self.table.setdefault(cls, {})[candidate] = original
        return candidate

    def counts(self) -> dict[str, int]:
        """How many distinct originals each class pseudonymised."""
        return {cls: len(entries) for cls, entries in sorted(self.table.items())}

    def prefixed(self, cls: str, prefix: str, original: str, length: int = 10) -> str:
        """``prefix`` + hex digest (``user_3f2a9c81``), two digits longer per collision."""

        def make(lower: str, attempt: int) -> str:
            return prefix + self.hexdigest(lower)[: length + 2 * attempt]

        return self.assign(cls, original, make)
