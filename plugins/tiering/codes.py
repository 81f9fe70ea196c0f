"""Customer codes: <tier code>-<region code>-<scale code>-<sequence>-<check digit>.

Example: 01-03-2-0000042-7 = tier A (01), region East (03), scale 2 (trailing net
revenue of at least 10,000), customer sequence 42, Luhn check digit 7. The check
digit is the Luhn (mod 10) digit over all the other digits, so every single-digit
error and most swaps of neighbouring digits are detected. dbt computes the codes
(macro luhn_check_digit); this module is the reference and the validator.
"""
from __future__ import annotations

import re

CODE_RE = re.compile(r"^(\d{2})-(\d{2})-(\d)-(\d{4,12})-(\d)$")


def luhn_check_digit(digits: str) -> int:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:  # the rightmost payload digit is doubled
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return (10 - total % 10) % 10


def make_code(tier_code: str, region_code: str, scale_code: str, sequence: int, sequence_digits: int = 7) -> str:
    payload = f"{tier_code}{region_code}{scale_code}{sequence:0{sequence_digits}d}"
    return f"{tier_code}-{region_code}-{scale_code}-{sequence:0{sequence_digits}d}-{luhn_check_digit(payload)}"


def validate_code(code: str) -> bool:
    """True when the code is well formed and its check digit matches."""
    match = CODE_RE.match(code or "")
    if not match:
        return False
    payload = "".join(match.groups()[:4])
    return luhn_check_digit(payload) == int(match.group(5))
