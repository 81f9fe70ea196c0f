"""Personal data in free text: e-mail addresses and phone numbers, found and scrubbed.

One definition, used in Python (`contains_personal_data`, `scrub`) and in SQL: the dbt macro
`contains_personal_data` (dbt_project/macros/cross_db.sql; the row rule `personal_data_in_free_text`
of the staging models) gets these patterns as the dbt var `pii` (tiering.dbt_runner.dbt_vars).
The patterns are written for both engines (Python `re` and RE2: no look-around, no back-references).

A phone number is a run of digit groups that looks like one and holds PHONE_MIN_DIGITS to
PHONE_MAX_DIGITS digits (a longer run is a phone number followed by more numbers):
  - international, starting with "+":        +31 6 12345678, +1 (555) 123-4567, +44-20-7946-0958
  - an area code in parentheses:             (555) 123-4567, (020) 7946 0958
  - three to five groups of 2-5 digits with the same separator (space, "-" or "."):
                                             555-123-4567, 020 7946 0958, 06 12 34 56 78, 555.123.4567
  - a national number with its trunk 0:     07700900123
Ordinary numbers in messages are not phones: counts and amounts (no separators, or too few
digits: 1234567, 12345.67, 12 345 678), dates and timestamps (2024-01-31 has 8 digits),
run ids (202401-20261207T045512-ab12cd: groups longer than 5 digits, or glued to letters).
"""
from __future__ import annotations

import re

EMAIL_PATTERN = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
PHONE_PATTERN = "|".join((
    r"\+\d{1,3}(?:[ .\-]?(?:\(\d{1,5}\)|\d{1,5})){2,7}",
    r"\(\d{2,5}\)[ .\-]?\d{2,5}(?:[ .\-]?\d{2,5}){0,3}",
    r"\b\d{2,5}(?:-\d{2,5}){2,4}\b",
    r"\b\d{2,5}(?: \d{2,5}){2,4}\b",
    r"\b\d{2,5}(?:\.\d{2,5}){2,4}\b",
    r"\b0\d{9,10}\b",
))
PHONE_MIN_DIGITS = 9
PHONE_MAX_DIGITS = 15

EMAIL_PLACEHOLDER = "<email>"
PHONE_PLACEHOLDER = "<phone>"
RULE = "personal_data_in_free_text"

_EMAIL = re.compile(EMAIL_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


def _is_phone(candidate: str) -> bool:
    """A candidate with at least PHONE_MIN_DIGITS digits (more than PHONE_MAX_DIGITS: a phone number
    followed by other numbers, e.g. a date after it; `scrub` replaces the phone number only)."""
    return _digits(candidate) >= PHONE_MIN_DIGITS


def _scrub_phone(candidate: str) -> str:
    """<phone> for a candidate of up to PHONE_MAX_DIGITS digits; for a longer one (a phone number
    and what follows it, "+31 6 12345678 2024-01-31"), the longest run of its space-separated parts,
    from the start, of at most PHONE_MAX_DIGITS digits is the phone number (all of it if none is)."""
    if _digits(candidate) <= PHONE_MAX_DIGITS:
        return PHONE_PLACEHOLDER
    parts = candidate.split(" ")
    for end in range(len(parts) - 1, 0, -1):
        head = " ".join(parts[:end])
        if PHONE_MIN_DIGITS <= _digits(head) <= PHONE_MAX_DIGITS:
            return PHONE_PLACEHOLDER + " " + " ".join(parts[end:])
    return PHONE_PLACEHOLDER


def contains_personal_data(text: str | None) -> bool:
    """Whether `text` holds an e-mail address or a phone number."""
    if not text:
        return False
    return bool(_EMAIL.search(text)) or any(_is_phone(m.group()) for m in _PHONE.finditer(text))


def scrub(text: str | None) -> str | None:
    """`text` with every e-mail address replaced by <email> and every phone number by <phone>."""
    if not text:
        return text
    text = _EMAIL.sub(EMAIL_PLACEHOLDER, text)
    return _PHONE.sub(lambda m: _scrub_phone(m.group()) if _is_phone(m.group()) else m.group(), text)
