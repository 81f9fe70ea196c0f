from __future__ import annotations

import itertools

import pytest

from tiering.codes import luhn_check_digit, make_code, validate_code


def test_known_luhn_values():
    assert luhn_check_digit("7992739871") == 3          # the textbook example
    assert make_code("01", "03", "2", 42) == "01-03-2-0000042-" + str(luhn_check_digit("010320000042"))


@pytest.mark.parametrize("code", [make_code(t, r, s, n) for t, r, s, n in
                                  [("01", "01", "1", 1), ("02", "05", "3", 9876543), ("04", "99", "4", 120)]])
def test_every_single_digit_error_is_detected(code):
    assert validate_code(code)
    positions = [i for i, ch in enumerate(code) if ch.isdigit()]
    for i, wrong in itertools.product(positions, "0123456789"):
        if code[i] == wrong:
            continue
        corrupted = code[:i] + wrong + code[i + 1:]
        assert not validate_code(corrupted), corrupted


@pytest.mark.parametrize("bad", ["", "01-03-2-0000042", "1-03-2-0000042-5", "01-03-2-000004A-5", "01032000004205"])
def test_malformed_codes_are_rejected(bad):
    assert not validate_code(bad)
