"""Cursor paging: cursors round-trip, anything else is refused naming `after`."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupons.domain import paging
from coupons.domain.errors import InvalidField
from coupons.domain.trail import prefix_successor

ids = st.integers(min_value=0, max_value=2**63 - 1)
texts = st.text(max_size=paging.MAX_KEY_TEXT).filter(lambda t: "\x00" not in t)


@given(ids)
def test_an_id_cursor_gives_back_its_key(key: int) -> None:
    cursor = paging.encode_cursor("coupons", (key,))

    assert paging.decode_cursor("coupons", cursor, (int,)) == (key,)


@given(texts, ids)
def test_a_text_and_id_cursor_gives_back_its_key_and_is_url_safe(text: str, key: int) -> None:
    cursor = paging.encode_cursor("search", (text, key))

    assert paging.decode_cursor("search", cursor, (str, int)) == (text, key)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64!",
        "x" * 700,
        _b64(b"not json"),
        _b64(b'{"a": 1}'),
        _b64(b'["series", 5]'),  # another list's cursor
        _b64(b'["coupons"]'),
        _b64(b'["coupons", 5, 6]'),
        _b64(b'["coupons", "5"]'),
        _b64(b'["coupons", -1]'),
        _b64(b'["coupons", true]'),
        _b64(b'["coupons", 1.5]'),
        _b64(b'["coupons", 99999999999999999999]'),
        _b64(b"\xff\xfe"),
    ],
)
def test_a_cursor_this_list_did_not_hand_out_is_9002_naming_after(cursor: str) -> None:
    with pytest.raises(InvalidField) as raised:
        paging.decode_cursor("coupons", cursor, (int,))

    assert raised.value.code == 9002
    assert raised.value.field == "after"


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_a_limit_outside_1_to_1000_is_9002_naming_limit(limit: int) -> None:
    with pytest.raises(InvalidField) as raised:
        paging.check_limit(limit)

    assert raised.value.field == "limit"


def test_a_page_has_a_cursor_only_when_more_rows_follow() -> None:
    full = paging.page_of([1, 2, 3], 2, "n", lambda n: (n,))
    last = paging.page_of([1, 2], 2, "n", lambda n: (n,))

    assert full.items == [1, 2]
    assert full.next_cursor is not None
    assert paging.decode_cursor("n", full.next_cursor, (int,)) == (2,)
    assert last == paging.Page([1, 2], None)


@given(st.text(min_size=1, max_size=8), st.text(max_size=8))
def test_every_string_with_the_prefix_lies_below_its_successor(prefix: str, rest: str) -> None:
    upper = prefix_successor(prefix)
    if upper is not None:
        assert prefix <= prefix + rest < upper
        assert upper.encode("utf-8", "surrogatepass") > (prefix + rest).encode(
            "utf-8", "surrogatepass"
        )


def test_the_successor_skips_past_the_last_character() -> None:
    assert prefix_successor("abc") == "abd"
    assert prefix_successor("ab\U0010ffff") == "ac"
    assert prefix_successor("\U0010ffff") is None
    assert prefix_successor("a\ud7ff") == "a\ue000"


def test_a_text_cursor_holding_a_lone_surrogate_is_9002_naming_after() -> None:
    # JSON's escape decodes to a lone surrogate, which no database text can hold
    cursor = _b64(b'["search", "\\ud800", 1]')

    with pytest.raises(InvalidField) as raised:
        paging.decode_cursor("search", cursor, (str, int))

    assert raised.value.field == "after"
