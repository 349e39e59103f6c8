"""Password policy after NIST SP 800-63B and ASVS 5.0 6.2.4: length, a blocklist, no
composition rules.

Passwords are NFKC-normalised (so the same characters typed on different keyboards match),
must be 12-128 characters (never truncated: argon2 hashes every byte; invisible characters
do not count) and must not be:

- only whitespace or invisible characters (Unicode Z* and C* categories);
- one of the 30,000 most common passwords (shipped as package data, decision 0033), also
  not once case, leet spellings (``p4$$w0rd``) and digits or symbols added before or after
  (``Password1234!``) are taken away;
- a shorter string repeated (``passwordpassword``, ``abcabcabcabc``, ``nope-nope-nope``);
- mostly repeated or sequential characters (``aaaaaaaaaaaa``, ``123456789012``,
  ``qwertyuiop12``);
- the account's own email address.
"""

from __future__ import annotations

import itertools
import unicodedata
from functools import lru_cache
from importlib import resources

from storefront.kit.errors import WeakPassword

MIN_LENGTH = 12
MAX_LENGTH = 128
# at least this share of neighbouring characters being equal or one step apart (on the
# alphabet, the digits or a keyboard row) marks a password as a run, not a choice
SEQUENTIAL_SHARE = 0.75
MIN_DISTINCT = 5

_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g"}
    | {"@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e", "(": "c"}
)
_LEET_L = str.maketrans({"1": "l", "!": "l"})
_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")
_ROW_NEIGHBOURS = frozenset(
    pair for row in _ROWS for a, b in itertools.pairwise(row) for pair in ((a, b), (b, a))
)


def normalize_password(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = (
        resources.files("storefront.identity")
        .joinpath("data/common-passwords.txt")
        .read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def _invisible(char: str) -> bool:
    return unicodedata.category(char)[0] == "C"  # control, format (zero-width), unassigned


def _blank(char: str) -> bool:
    return _invisible(char) or unicodedata.category(char)[0] == "Z" or char.isspace()


def _strip_ends(text: str) -> str:
    """Without the digits, symbols and spaces around the letters (``2024Password1!``)."""
    start, end = 0, len(text)
    while end > start and not text[end - 1].isalpha():
        end -= 1
    while start < end and not text[start].isalpha():
        start += 1
    return text[start:end]


def _strip_end(text: str) -> str:
    end = len(text)
    while end and not text[end - 1].isalpha():
        end -= 1
    return text[:end]


def _base_words(folded: str) -> set[str]:
    """The forms of a (case-folded) password to look up in the list."""
    forms = {folded, _strip_ends(folded), _strip_end(folded)}
    for form in list(forms):
        for unleeted in (form.translate(_LEET_L).translate(_LEET), form.translate(_LEET)):
            forms |= {unleeted, _strip_ends(unleeted)}
    forms.discard("")
    return forms


def _is_repetition(text: str) -> bool:
    """``text`` is a shorter string repeated (``abab``): it occurs inside ``text + text``
    at an offset other than 0 and ``len(text)``."""
    return len(text) > 1 and (text + text).find(text, 1) < len(text)


def _neighbours(a: str, b: str) -> bool:
    if a == b or (a, b) in _ROW_NEIGHBOURS:
        return True
    return abs(ord(a) - ord(b)) == 1 and (a.isalnum() or b.isalnum())


def _predictable(folded: str) -> bool:
    """Mostly repeated or sequential characters, or too few different ones."""
    if len(set(folded)) < MIN_DISTINCT:
        return True
    pairs = list(itertools.pairwise(folded))
    steps = sum(_neighbours(a, b) for a, b in pairs)
    return steps >= SEQUENTIAL_SHARE * len(pairs)


def check_password(password: str, *, email: str | None = None) -> str:
    """The normalised password, or WeakPassword (422) saying why it is refused."""
    normalized = normalize_password(password)
    if len(normalized) > MAX_LENGTH:
        raise WeakPassword(f"The password must have at most {MAX_LENGTH} characters.")
    if all(_blank(char) for char in normalized):
        raise WeakPassword("The password must not be only spaces or invisible characters.")
    if sum(not _invisible(char) for char in normalized) < MIN_LENGTH:
        raise WeakPassword(
            f"The password must have at least {MIN_LENGTH} characters "
            "(invisible characters do not count)."
        )
    folded = normalized.casefold()
    visible = "".join(char for char in folded if not _blank(char))
    words = common_passwords()
    if any(form in words for form in _base_words(folded) | _base_words(visible)):
        raise WeakPassword(
            "This password is one of the most commonly used passwords (or one with only "
            "digits, symbols or look-alike characters added); choose another."
        )
    alnum = "".join(char for char in folded if char.isalnum())
    if any(_is_repetition(form) for form in (folded, _strip_ends(folded), alnum)):
        raise WeakPassword("The password must not be a shorter sequence repeated.")
    if _predictable(folded):
        raise WeakPassword(
            "The password must not be mostly repeated or sequential characters "
            "(aaaa, 1234, qwerty)."
        )
    if email and folded in {email.casefold(), email.split("@")[0].casefold()}:
        raise WeakPassword("The password must not be your email address.")
    return normalized
