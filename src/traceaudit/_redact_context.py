"""The state of one redaction: which secrets the trace holds, and their pseudonyms.

Redaction runs the same rewriters twice over the trace's distinct field values:

1. **discovery** (``ctx.discovering``): the rewriters only *note* what they find where the
   structure says what it is: the name after ``C:\\Users\\``, both halves of
   ``DOMAIN\\user``, ``COMPUTERNAME=`` in an environment block, a UNC server, a host in a
   Network row, SIDs, e-mail and IP addresses;
2. :meth:`Context.freeze` decides each secret's class (a name seen both as ``USERDOMAIN``
   and ``COMPUTERNAME`` is a computer) and compiles one expression that finds them all;
3. **rewriting**: structured spots get the class pseudonym, and every text that is kept
   (well-known folders, free text in Detail) has the secrets replaced wherever they
   stand as a word (``bob`` in ``bob-notes``, not in ``bobcat``). Secrets named with
   ``--secret`` are replaced anywhere, inside words too.

Secrets shorter than 3 characters, or that are also well-known words (a computer named
``DELL``, a user named ``Public``), are pseudonymised only where the structure says what
they are: replacing them inside other text would mangle it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from traceaudit._redact_keys import Pseudonyms
from traceaudit._redact_shapes import email_maker, ip_maker, sid_maker
from traceaudit._redact_vocab import ACCOUNTS, AUTHORITIES, is_vocab, split_ext

__all__ = ["CLASSES", "IDENTITY_CLASSES", "Context", "Secret"]

CLASSES: tuple[str, ...] = (
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
"""The classes of secrets, each replaced by default and kept with ``--keep CLASS``."""

IDENTITY_CLASSES: tuple[str, ...] = ("sid", "email", "ip", "user", "computer", "unc", "domain")
"""Classes that name someone or something; in priority order when a value is in several.
They are replaced wherever they stand in text, and the leak check looks for them."""

_PREFIX = {
    "user": "user_",
    "computer": "host_",
    "domain": "domain_",
    "unc": "server_",
    "cmdline": "arg_",
    "env": "env_",
    "secret": "secret_",
}
_MACHINE = re.compile(r"(?:desktop|laptop|win|pc|ws|nb|vm)-[a-z0-9]{4,}")
_WORD_LEFT = r"(?<![^\W_])"
_WORD_RIGHT = r"(?![^\W_])"
MIN_SECRET = 3
"""Secrets shorter than this are not searched for inside text (too many false hits)."""


class Secret(NamedTuple):
    """One secret found in the trace: its class and its text as first seen."""

    kind: str
    original: str


class Context:
    """Secrets, pseudonyms and the replace-in-text machinery of one redaction."""

    def __init__(self, key: bytes, keep: Iterable[str] = (), custom: Iterable[str] = ()) -> None:
        self.pseudo = Pseudonyms(key)
        self.keep = frozenset(keep)
        self.custom = tuple(dict.fromkeys(s.strip() for s in custom if s.strip()))
        self.discovering = True
        self.system_images: set[str] = set()
        self._noted: dict[str, dict[str, str]] = {}
        self._final: dict[str, Secret] = {}
        self._kept: set[str] = set()
        self._identity: dict[str, Secret] = {}
        self._late: dict[str, Secret] = {}
        self._custom_lower = {s.lower(): s for s in self.custom}
        self._words: re.Pattern[str] | None = None
        self._anywhere: re.Pattern[str] | None = None
        self.memo: dict[tuple[str, str], str] = {}
        """Rewritten names by (kind, name), for rewriters that depend on nothing else."""

    # ------------------------------------------------------------------ discovery
    def note(self, cls: str, value: str) -> None:
        """Record that ``value`` is a secret of class ``cls`` (discovery), or check that it
        was recorded (rewriting: a value first seen then is kept for the leak check)."""
        value = value.strip()
        if not value:
            return
        lower = value.lower()
        if self.discovering:
            self._noted.setdefault(lower, {}).setdefault(cls, value)
        elif lower not in self._noted and lower not in self._late and self._is_secret(cls, lower):
            self._late[lower] = Secret(cls, value)

    def _is_secret(self, cls: str, lower: str) -> bool:
        if cls in self.keep:
            return False
        if cls in ("user", "computer") and lower in ACCOUNTS:
            return False
        return not (cls == "domain" and (lower in AUTHORITIES or lower in ACCOUNTS))

    def freeze(self) -> None:
        """End discovery: classify every noted secret and compile the text matchers."""
        for lower, classes in self._noted.items():
            ranked = [c for c in IDENTITY_CLASSES if c in classes]
            if not ranked:
                continue
            cls = ranked[0]
            if cls == "domain" and _MACHINE.fullmatch(lower):  # DESKTOP-6PCIALL\test
                cls = "computer"
            if cls in self.keep:
                self._kept.add(lower)
                continue
            if not self._is_secret(cls, lower):
                continue
            secret = Secret(cls, classes[ranked[0]])
            self._final[lower] = secret
            if self.searchable(lower):
                self._identity[lower] = secret
        self._words = _alternation(self._identity, _WORD_LEFT, _WORD_RIGHT)
        self._anywhere = _alternation(self._custom_lower, "", "")
        self.pseudo.guard = self._contains_secret
        self.memo.clear()
        self.discovering = False

    def searchable(self, lower: str) -> bool:
        """Whether a secret is looked for inside text: long enough and not a known word."""
        return (
            len(lower) >= MIN_SECRET
            and not is_vocab(lower, self.system_images)
            and lower not in AUTHORITIES
        )

    def _contains_secret(self, text: str) -> bool:
        return bool(
            (self._words is not None and self._words.search(text))
            or (self._anywhere is not None and self._anywhere.search(text))
        )

    # ------------------------------------------------------------------ lookups
    def secrets(self) -> list[Secret]:
        """Every secret the leak check must not find: searchable identity secrets, those
        only met while rewriting, and the ``--secret`` words."""
        found = list(self._identity.values())
        found += [s for lower, s in self._late.items() if self.searchable(lower)]
        found += [Secret("secret", s) for s in self.custom]
        return found

    def identity(self, text: str) -> str | None:
        """The pseudonym of ``text`` when it is, as a whole, a searchable identity secret."""
        if self.discovering:
            return None
        secret = self._identity.get(text.lower())
        return None if secret is None else self.pseudonym(secret.kind, text)

    def structural(self, cls: str, value: str) -> str:
        """``value`` found where the structure says it is a ``cls`` (the name after
        ``C:\\Users\\``, ``COMPUTERNAME=``): its pseudonym, or itself when kept."""
        core = value.strip()
        if not core:
            return value
        self.note(cls, core)
        if self.discovering:
            return value
        lower = core.lower()
        if lower in self._kept or not self._is_secret(cls, lower):
            return value
        secret = self._final.get(lower) or self._late.get(lower)
        start = len(value) - len(value.lstrip())
        end = len(value.rstrip())
        return value[:start] + self.pseudonym(secret.kind if secret else cls, core) + value[end:]

    def pseudonym(self, cls: str, value: str) -> str:
        """The pseudonym of ``value`` in class ``cls`` (no kept-class check)."""
        if self.discovering:
            return value
        pseudo = self.pseudo
        if cls == "sid":
            return pseudo.assign(cls, value, sid_maker(pseudo, value))
        if cls == "ip":
            return pseudo.assign(cls, value, ip_maker(pseudo, value))
        if cls == "email":
            return pseudo.assign(cls, value, email_maker(pseudo))
        return pseudo.prefixed(cls, _PREFIX[cls], value, 8)

    def name(self, component: str) -> str:
        """``name_3f2a9c81d0`` + the extension, for a file or folder name (class path)."""
        stem, ext = split_ext(component)
        if not stem:
            stem, ext = component, ""
        if self.discovering:
            return component
        return self.pseudo.prefixed("path", "name_", stem, 10) + self.substitute(ext)

    # ------------------------------------------------------------------ text
    def substitute(self, text: str) -> str:
        """``text`` with every secret replaced: identity secrets where they stand as a word,
        ``--secret`` words anywhere (case-insensitive)."""
        if self.discovering or not text:
            return text
        if self._words is not None and self._words.search(text):
            text = self._words.sub(self._replace_identity, text)
        if self._anywhere is not None and self._anywhere.search(text):
            text = self._anywhere.sub(
                lambda m: self.pseudo.prefixed("secret", "secret_", m.group(0), 8), text
            )
        return text

    def _replace_identity(self, match: re.Match[str]) -> str:
        found = match.group(0)
        secret = self._identity.get(found.lower())
        if secret is None:  # case-insensitive matching folds a few letters lower() does not
            folded = found.casefold()
            secret = next((s for k, s in self._identity.items() if k.casefold() == folded), None)
        return found if secret is None else self.pseudonym(secret.kind, found)


def _alternation(words: dict[str, object], left: str, right: str) -> re.Pattern[str] | None:
    """One case-insensitive expression matching any of ``words`` (longest first)."""
    if not words:
        return None
    body = "|".join(re.escape(w) for w in sorted(words, key=lambda w: (-len(w), w)))
    return re.compile(f"{left}(?:{body}){right}", re.IGNORECASE)
