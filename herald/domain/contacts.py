"""Contact values: email addresses and phones, validated and normalised.

Phones are normalised to E.164 with Google's libphonenumber metadata
(`phonenumbers`): the guide's format is international, `+79123456789`.
"""

from __future__ import annotations

import re

import phonenumbers

from herald.domain.errors import ValidationFailed

# RFC 5321 limits with the practical RFC 5322 dot-atom subset that mailbox
# providers accept; quoted local parts are refused on purpose (no provider
# delivers to them reliably).
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^({_LOCAL})@((?:{_LABEL}\.)+{_LABEL})$")
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+{_LABEL}$")


def normalize_email(value: str, path: str = "email") -> str:
    """The address trimmed with its domain lower-cased; malformed addresses are refused."""
    text = value.strip()
    match = _EMAIL.match(text)
    if match is None or len(text) > 254 or len(match.group(1)) > 64:
        raise ValidationFailed(f"{value!r} is not a valid email address", path)
    return f"{match.group(1)}@{match.group(2).lower()}"


def email_key(email: str) -> str:
    """The address as profiles are matched by it: case-insensitive."""
    return email.lower()


def email_domain(email: str) -> str:
    """The domain part of a normalised address."""
    return email.rsplit("@", 1)[1]


def normalize_domain(value: str, path: str = "domain") -> str:
    """A mail domain, lower-cased, without a leading `@`."""
    text = value.strip().lstrip("@").lower()
    if not _DOMAIN.match(text):
        raise ValidationFailed(f"{value!r} is not a valid domain", path)
    return text


def normalize_phone(value: str, path: str = "phone") -> str:
    """The phone in E.164 (`+79123456789`); it must be given in international form."""
    text = value.strip()
    if not text.startswith("+") and text.isdigit():
        text = "+" + text
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise ValidationFailed(f"{value!r} is not a phone number in international form", path) from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationFailed(f"{value!r} is not a valid phone number", path)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
