"""The one normalisation of an email address, wherever an address is accepted or looked up.

Registration, sign-in (``/auth/login`` and ``/auth/token``), the sign-in budgets and
throttles, operator commands and the blind index all call :func:`normalize_email`, so an
address typed in another Unicode form (decomposed accents, an ``xn--`` domain) or letter
case finds the same account it registered.
"""

from __future__ import annotations

import contextlib
import unicodedata

from email_validator import EmailNotValidError, validate_email


def normalize_email(value: str) -> str:
    """Trimmed, NFC, the domain in its Unicode (IDNA) form, lower-cased.

    The same steps as registration's validation (``email-validator``, no DNS); a value that
    is not a valid address (a typo at sign-in) is still trimmed, NFC-normalised and
    lower-cased, so it matches nothing rather than failing differently.
    """
    text = unicodedata.normalize("NFC", value.strip())
    with contextlib.suppress(EmailNotValidError):
        text = validate_email(text, check_deliverability=False).normalized
    return unicodedata.normalize("NFC", text.lower())
