"""The state of one redaction: which secrets the trace holds, and their pseudonyms.

Redaction runs the same rewriters twice over the trace's distinct field values:

1. **discovery** (``ctx.discovering``): the rewriters only *note* what they find where the
   structure says what it is: the name after ``C:\\Users\\``, both halves of
   ``DOMAIN\\user``, ``COMPUTERNAME=`` in an environment block, a UNC server, a host in a
   Network row, SIDs, e-mail and IP addresses; and every value they will replace in the
   other classes: file and folder names (``path``), command-line arguments (``cmdline``),
   environment values (``env``), volume serial numbers. They also learn the words of the
   columns that are written back untouched (Operation, Result, Category…:
   :meth:`Context.learn`) and the words software chose that are kept where they stand
   (system folders, registry keys, environment variable names, option names, service
   names, extensions: :meth:`Context.public`);
2. :meth:`Context.freeze` decides each secret's class (a name seen both as ``USERDOMAIN``
   and ``COMPUTERNAME`` is a computer) and compiles one expression that finds them all;
3. **rewriting**: structured spots get the class pseudonym, and every text that is kept
   (well-known folders, free text in Detail) has the secrets replaced wherever they
   stand as a word (``bob`` in ``bob-notes``, not in ``bobcat``), with the pseudonym of
   their class: a project folder's name in a registry value becomes the same
   ``name_…`` as in the path. Secrets named with ``--secret`` are replaced anywhere,
   inside words too.

Secrets shorter than 3 characters, without a letter (numbers, times; IP addresses
excepted), that are also well-known words (a computer named ``DELL``, a user named
``Public``), or that are words of the untouched columns (a folder named ``Path`` in a
trace with ``PATH NOT FOUND`` results) are pseudonymised only where the structure says
what they are: replacing them inside other text would mangle it, and the leak check
could never pass. File names, arguments and environment values that are also words
software chose in the same trace (a folder named ``Features`` beside
``--enable-features``, ``C:\\Program`` beside ``C:\\Program Files``) are likewise
replaced where they stand as names only: they say nothing about the owner, and
``Program Files`` must stay ``Program Files``. Identity secrets are replaced everywhere
whatever words they match.

The leak check (:mod:`._redact_check`) looks for :meth:`Context.secrets`: every original
noted or replaced, of every class, that is searched for in text, and the ``--secret``
words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from traceaudit.redaction.keys import Pseudonyms
from traceaudit.redaction.shapes import (
    email_maker,
    generated_shape,
    ip_maker,
    serial_maker,
    sid_maker,
)
from traceaudit.redaction.vocab import ACCOUNTS, AUTHORITIES, is_vocab, split_ext

__all__ = ["CLASSES", "IDENTITY_CLASSES", "MIN_SECRET", "Context", "Secret", "word_pattern"]

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
_OTHER: dict[str, tuple[str, str]] = {
    "path": ("path", "name"),
    "shape": ("path", "shape"),
    "cmdline": ("cmdline", ""),
    "env": ("env", ""),
    "serial": ("computer", "serial"),
}
"""Notes of the classes that are not identities, in priority order when a value is in
several: the class its pseudonym belongs to, and how it is made (:meth:`Context._make`)."""
_CHOSEN_APPLIES = frozenset(["path", "cmdline", "env"])
"""Classes whose originals are not searched for when software chose the same word."""
_MACHINE = re.compile(r"(?:desktop|laptop|win|pc|ws|nb|vm)-[a-z0-9]{4,}")
_WORD_LEFT = r"(?<![^\W_])"
_WORD_RIGHT = r"(?![^\W_])"
_LETTERS = re.compile(r"[^\W\d_]")
_GRAMMAR_WORDS = re.compile(r"[^\W_]{3,}")
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
        self.grammar: set[str] = set()
        """Lower-cased values and words of the columns written back untouched."""
        self.chosen: set[str] = set()
        """Lower-cased words software chose, kept where they stand (:meth:`public`)."""
        self._noted: dict[str, dict[str, str]] = {}
        self._final: dict[str, Secret] = {}
        self._kept: set[str] = set()
        self._identity: dict[str, Secret] = {}
        self._text: dict[str, tuple[Secret, str]] = {}
        self._late: dict[str, Secret] = {}
        self._custom_lower = {s.lower(): s for s in self.custom}
        self._words: re.Pattern[str] | None = None
        self._anywhere: re.Pattern[str] | None = None
        self.memo: dict[tuple[str, str], str] = {}
        """Rewritten names by (kind, name), for rewriters that depend on nothing else."""

    # ------------------------------------------------------------------ discovery
    def note(self, cls: str, value: str) -> None:
        """Record that ``value`` is a secret of class ``cls`` (discovery), or check that it
        was recorded (rewriting: a value first seen then is kept for the leak check).

        ``cls`` is an identity class or a key of :data:`_OTHER` (``shape`` for generated
        names, ``serial`` for volume serial numbers)."""
        value = value.strip()
        if not value:
            return
        lower = value.lower()
        if self.discovering:
            self._noted.setdefault(lower, {}).setdefault(cls, value)
        elif (
            cls in IDENTITY_CLASSES
            and lower not in self._noted
            and lower not in self._late
            and self._is_secret(cls, lower)
        ):
            self._late[lower] = Secret(cls, value)

    def learn(self, value: str) -> None:
        """Remember a value of a column that is written back untouched (discovery)."""
        lower = value.lower()
        if lower not in self.grammar:
            self.grammar.add(lower)
            self.grammar.update(_GRAMMAR_WORDS.findall(lower))

    def public(self, text: str) -> None:
        """Remember the words of ``text``, a value kept where it stands because software
        chose it (a system folder, a registry key, an environment variable's name, an
        option, a service name, an extension); discovery only. A file name, argument
        or environment value equal to one of them is not searched for in text."""
        if self.discovering and text:
            lower = text.lower()
            if lower not in self.chosen:
                self.chosen.add(lower)
                self.chosen.update(_GRAMMAR_WORDS.findall(lower))

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
                self._freeze_other(lower, classes)
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
            if self.searchable(lower, cls):
                self._identity[lower] = secret
                self._text[lower] = (secret, "")
        self._words = word_pattern(self._text, whole_word=True, ignore_case=True)
        self._anywhere = word_pattern(self._custom_lower, whole_word=False, ignore_case=True)
        self.pseudo.guard = self._contains_secret
        self.memo.clear()
        self.discovering = False

    def _freeze_other(self, lower: str, classes: dict[str, str]) -> None:
        """A value noted only in a class that is not an identity (path, cmdline, env…)."""
        for kind, (cls, how) in _OTHER.items():
            if kind in classes:
                if cls not in self.keep and self.searchable(lower, cls):
                    self._text[lower] = (Secret(cls, classes[kind]), how)
                return

    def searchable(self, lower: str, cls: str = "") -> bool:
        """Whether a secret is looked for inside text (and by the leak check): an IP
        address always; anything else when it is long enough, has a letter, and is not a
        well-known word or a word of the columns written back untouched; a file name,
        argument or environment value also not when software chose the same word."""
        if cls == "ip":
            return True
        return (
            len(lower) >= MIN_SECRET
            and _LETTERS.search(lower) is not None
            and not is_vocab(lower, self.system_images)
            and lower not in AUTHORITIES
            and lower not in self.grammar
            and (cls not in _CHOSEN_APPLIES or lower not in self.chosen)
        )

    def _contains_secret(self, text: str) -> str | None:
        """The first secret ``text`` contains (where it would be replaced), if any."""
        for pattern in (self._words, self._anywhere):
            if pattern is not None and (found := pattern.search(text)) is not None:
                return found.group(0)
        return None

    # ------------------------------------------------------------------ lookups
    def secrets(self) -> list[Secret]:
        """Every secret the leak check must not find: each original noted in discovery
        or replaced while rewriting, of any class, that is searched for in text (see
        :meth:`searchable`), and the ``--secret`` words."""
        found: dict[str, Secret] = {lower: secret for lower, (secret, _) in self._text.items()}
        for lower, secret in self._late.items():
            if self.searchable(lower, secret.kind):
                found.setdefault(lower, secret)
        for cls, entries in self.pseudo.table.items():
            if cls == "secret":
                continue
            for original in entries.values():
                lower = original.lower()
                if lower not in found and self.searchable(lower, cls):
                    found[lower] = Secret(cls, original)
        return list(found.values()) + [Secret("secret", s) for s in self.custom]

    def kind_of(self, text: str) -> str | None:
        """The class of ``text`` when it is, as a whole, a secret (after freezing)."""
        lower = text.lower()
        secret = self._final.get(lower) or self._late.get(lower)
        if secret is not None:
            return secret.kind
        entry = self._text.get(lower)
        return None if entry is None else entry[0].kind

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
        """The pseudonym of ``value`` in class ``cls`` (no kept-class check). In discovery,
        ``value`` itself, noted when ``cls`` is ``cmdline`` or ``env``."""
        if self.discovering:
            if cls in ("cmdline", "env"):
                self.note(cls, value)
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
            self.note("path", stem)
            self.public(ext)
            return component
        return self.pseudo.prefixed("path", "name_", stem, 10) + self.substitute(ext)

    def whole_name(self, value: str) -> str:
        """``name_3f2a9c81d0`` for a whole value (a Company or Description; class path)."""
        if self.discovering:
            self.note("path", value)
            return value
        return self.pseudo.prefixed("path", "name_", value, 10)

    def shaped(self, name: str) -> str | None:
        """A pseudonym of the same shape for a generated name (temp name, GUID, hash; class
        path), or None when ``name`` is not one."""
        make = generated_shape(self.pseudo, name)
        if make is None:
            return None
        if self.discovering:
            self.note("shape", name)
            return name
        return self.pseudo.assign("path", name, make, group="shape")

    def serial(self, serial: str) -> str:
        """A volume serial number (``1A2B-3C4D``): hex of the same shape (class computer)."""
        if self.discovering:
            self.note("serial", serial)
            return serial
        return self.pseudo.assign("computer", serial, serial_maker(self.pseudo), group="volume")

    def _make(self, secret: Secret, how: str, found: str) -> str:
        """The pseudonym of ``found`` (a secret met inside text), as its class makes it."""
        if how == "name":
            return self.pseudo.prefixed("path", "name_", found, 10)
        if how == "shape":
            return self.shaped(found) or self.pseudo.prefixed("path", "name_", found, 10)
        if how == "serial":
            return self.serial(found)
        return self.pseudonym(secret.kind, found)

    # ------------------------------------------------------------------ text
    def substitute(self, text: str) -> str:
        """``text`` with every secret replaced: noted secrets where they stand as a word,
        ``--secret`` words anywhere (case-insensitive)."""
        if self.discovering or not text:
            return text
        if self._words is not None and self._words.search(text):
            text = self._words.sub(self._replace_word, text)
        if self._anywhere is not None:
            # a pseudonym can form the word again with what follows it (--secret 10. in
            # "Version 10.0.1" gives "secret_…d1" + "0.1"): replace until none is left
            for _ in range(8):
                if self._anywhere.search(text) is None:
                    break
                text = self._anywhere.sub(self._replace_anywhere, text)
        return text

    def _replace_anywhere(self, match: re.Match[str]) -> str:
        return self.pseudo.prefixed("secret", "secret_", match.group(0), 8)

    def _replace_word(self, match: re.Match[str]) -> str:
        found = match.group(0)
        entry = self._text.get(found.lower())
        if entry is None:  # case-insensitive matching folds a few letters lower() does not
            folded = found.casefold()
            entry = next((e for k, e in self._text.items() if k.casefold() == folded), None)
        return found if entry is None else self._make(entry[0], entry[1], found)


def word_pattern(
    words: Iterable[str], *, whole_word: bool, ignore_case: bool
) -> re.Pattern[str] | None:
    """One expression matching any of ``words`` (lower-cased), the longest where several
    start at the same place; ``whole_word``: only where the match is not inside a longer
    run of letters and digits.

    The words are laid out as a trie (``notes|notebook`` → ``note(?:s|book)``), so that
    matching costs about the same for ten words as for ten thousand: a trace has
    thousands of file names.
    """
    unique = sorted({w for w in words if w})
    if not unique:
        return None
    left, right = (_WORD_LEFT, _WORD_RIGHT) if whole_word else ("", "")
    flags = re.IGNORECASE if ignore_case else 0
    try:
        return re.compile(f"{left}(?:{_trie(unique)}){right}", flags)
    except (RecursionError, re.error, OverflowError):  # pragma: no cover - deep tries
        body = "|".join(re.escape(w) for w in sorted(unique, key=lambda w: (-len(w), w)))
        return re.compile(f"{left}(?:{body}){right}", flags)


def _trie(words: list[str]) -> str:
    """The regular expression of a trie of ``words`` (greedy: longer words first)."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    return _render(root)


def _render(node: dict[str, Any]) -> str:
    parts = []
    for char in sorted(k for k in node if k):
        child = node[char]
        text = re.escape(char)
        while len(child) == 1 and "" not in child:  # a chain: one literal run
            ((char, child),) = child.items()
            text += re.escape(char)
        parts.append(text + _render(child))
    if not parts:
        return ""
    body = parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
    return f"(?:{body})?" if "" in node else body
