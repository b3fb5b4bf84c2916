"""Domain code rules: trimming, case-insensitive matching, output casing, generation."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupons.domain import codes
from coupons.domain.codes import CodeCase
from coupons.domain.errors import InvalidCodeCase

# Codes as clients send them: letters, digits, punctuation, with stray whitespace around.
code_text = st.text(alphabet=string.ascii_letters + string.digits + "-_./", max_size=20)
padding = st.text(alphabet=" \t\n\r", max_size=3)
pasted_code = st.builds(lambda pre, code, post: pre + code + post, padding, code_text, padding)
any_text = st.text(max_size=30)


# --- examples -------------------------------------------------------------------------------


def test_clean_strips_surrounding_whitespace_only() -> None:
    assert codes.clean("  Ab 12\t\n") == "Ab 12"


def test_normalize_trims_and_folds_case() -> None:
    assert codes.normalize(" AbC1 ") == codes.normalize("abc1") == "abc1"


def test_distinct_codes_keeps_the_first_spelling_and_drops_blanks() -> None:
    assert codes.distinct_codes([" Abc ", "ABC", "", "   ", "x1", "X1", "abc"]) == ["Abc", "x1"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, CodeCase.UPPER),
        ("UPPER", CodeCase.UPPER),
        ("lower", CodeCase.LOWER),
        ("As_It_Is", CodeCase.AS_IT_IS),
    ],
)
def test_code_case_parses_case_insensitively_defaulting_to_upper(
    value: str | None, expected: CodeCase
) -> None:
    assert CodeCase.parse(value) is expected


@pytest.mark.parametrize(
    "value",
    ["", "CAMEL", "AS IT IS", "UPPERCASE", " LOWER ", "LOWER\n", "\tupper", "as_it_i\u017f"],
)
def test_an_unknown_code_case_is_error_9007(value: str) -> None:
    with pytest.raises(InvalidCodeCase) as raised:
        CodeCase.parse(value)

    assert raised.value.code == 9007


def test_code_case_renders_codes() -> None:
    assert CodeCase.UPPER.render("aB1") == "AB1"
    assert CodeCase.LOWER.render("aB1") == "ab1"
    assert CodeCase.AS_IT_IS.render("aB1") == "aB1"


def test_generated_codes_use_the_readable_alphabet() -> None:
    generated = {codes.generate_code() for _ in range(200)}

    assert len(generated) == 200
    for code in generated:
        assert len(code) == codes.GENERATED_CODE_LENGTH
        assert set(code) <= set(codes.CODE_ALPHABET)
    assert not set("01OIL") & set(codes.CODE_ALPHABET)


def test_generated_pins_are_digits() -> None:
    pin = codes.generate_pin()

    assert len(pin) == codes.PIN_LENGTH and pin.isdigit()


# --- properties -----------------------------------------------------------------------------


@given(any_text)
def test_normalize_is_idempotent(code: str) -> None:
    assert codes.normalize(codes.normalize(code)) == codes.normalize(code)


@given(pasted_code, st.sampled_from(list(CodeCase)))
def test_a_code_written_in_any_output_case_matches_itself(code: str, case: CodeCase) -> None:
    # A client that reads a code from a response and sends it back must hit the same coupon.
    assert codes.normalize(case.render(code)) == codes.normalize(code)


@given(pasted_code)
def test_whitespace_around_a_code_never_changes_its_key(code: str) -> None:
    assert codes.normalize(f"  {code}\t") == codes.normalize(code)


@given(st.lists(st.one_of(pasted_code, any_text), max_size=30))
def test_distinct_codes_has_one_trimmed_entry_per_key_in_first_seen_order(
    raw: list[str],
) -> None:
    result = codes.distinct_codes(raw)

    keys = [codes.normalize(code) for code in result]
    # one entry per matching key, none blank, each already trimmed
    assert len(keys) == len(set(keys))
    assert all(code and code == codes.clean(code) for code in result)
    # every non-blank input is represented by its first spelling, in input order
    expected: list[str] = []
    for item in raw:
        if codes.clean(item) and codes.normalize(item) not in {
            codes.normalize(e) for e in expected
        }:
            expected.append(codes.clean(item))
    assert result == expected


@given(st.lists(pasted_code, max_size=30))
def test_distinct_codes_is_idempotent(raw: list[str]) -> None:
    once = codes.distinct_codes(raw)

    assert codes.distinct_codes(once) == once
