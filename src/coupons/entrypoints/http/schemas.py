"""Request bodies (camelCase, unknown fields ignored) with the vendor's examples."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    StringConstraints,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from coupons.domain.codes import MAX_CODE_LENGTH, CodeCase, normalize, trimmed_pin
from coupons.domain.errors import InvalidField
from coupons.domain.model import Coupon, CouponState, normalize_email
from coupons.domain.revoke import MAX_REASON_LENGTH, FailureReason, Outcome
from coupons.entrypoints.http import render
from coupons.entrypoints.http.envelope import failure_body, success_body
from coupons.services.common import CustomerRef, is_blank

# Codes are matched and stored trimmed, so their length is counted trimmed too.
Code = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_CODE_LENGTH)]
# A JSON integer and nothing else: "1", 1.0 and true where an id or a count belongs are 9002
# (spec §1), not read as 1. Text fields still take numbers (`coerce_numbers_to_str`).
Int = Annotated[int, Strict()]


# Ids go up to 2**62, which is 19 digits: past that, a number only needs to be out of range.
_MOST_ID_DIGITS = 19


def digits_as_int(value: Any) -> Any:
    """A string of ASCII digits (spaces around them allowed, as around other identifiers) as
    the number it writes; anything else as it is, for a strict integer check to refuse.
    Thousands of digits are not handed to int() (it refuses past 4,300): any number that long
    is past every id's range, and the range check says so."""
    if isinstance(value, str):
        value = value.strip(" ")
    if not (isinstance(value, str) and value.isascii() and value.isdigit()):
        return value
    return int(value) if len(value.lstrip("0")) <= _MOST_ID_DIGITS else 2**62 + 1


def blank_as_none(value: Any) -> Any:
    """An identifier as the services read it: blank text is not given (`is_blank`)."""
    return None if is_blank(value) else value


# An id a client may leave blank (a query parameter): blank is none, the range applies to a
# number only.
# Written in digits, as a path's id (`?id=1_000`, `7.0` and `+7` were read as numbers).
OptionalId = Annotated[
    Annotated[
        int,
        BeforeValidator(digits_as_int),
        Strict(),
        Field(ge=1, le=2**62),
        WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 2**62}),
    ]
    | None,
    BeforeValidator(blank_as_none),
]


# A customer id may also come as a string of digits: the vendor's own revoke example sends
# `"customer": {"id": "555567088"}`. Still not a float or a boolean.
CustomerId = Annotated[
    int,
    BeforeValidator(digits_as_int),
    Strict(),
    Field(ge=1, le=2**62),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 2**62},
                {"type": "string", "pattern": "^[0-9]+$", "description": "digits: 1 to 2**62"},
            ]
        }
    ),
]


def _fits_folded(limit: int, fold: Callable[[str], str]) -> AfterValidator:
    """Stored values keep a case-folded twin in a column of the same width; "ß" folds to
    "ss", so check the folded length too (PostgreSQL would refuse the row with a 500)."""

    def check(value: str) -> str:
        if len(fold(value)) > limit:
            raise ValueError(f"must be at most {limit} characters once case-folded")
        return value

    return AfterValidator(check)


# Values that are stored, not just matched: they must fit their columns.
NewCode = Annotated[Code, _fits_folded(MAX_CODE_LENGTH, normalize)]
NewEmail = Annotated[str, StringConstraints(max_length=320), _fits_folded(320, normalize_email)]
NewMobile = Annotated[str, StringConstraints(max_length=40)]
_BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

# An amount written as text: ASCII digits, an optional sign, point and exponent.
_AMOUNT_TEXT = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _amount_text(value: Any) -> Any:
    # Python's Decimal also reads "1_000" as 1000 and an Arabic-Indic five (U+0665) as 5,
    # which no client means and no other reader of the same JSON would take.
    if isinstance(value, str) and not _AMOUNT_TEXT.fullmatch(value.strip()):
        raise ValueError("must be a number, or a string of one in ASCII digits")
    return value


def _four_places(value: Decimal) -> Decimal:
    # Amounts are stored to four places. A zero has no digits for `decimal_places` to count,
    # so "0E-20000" passed it, and PostgreSQL refused its 20,000-place scale with a 500.
    try:
        return value.quantize(_FOURTH) if value.is_finite() else value
    except InvalidOperation:  # past the context's 28 digits: no amount this large is stored
        raise ValueError("must have at most 10 digits before the point") from None


_FOURTH = Decimal("0.0001")
Amount = Annotated[Decimal, BeforeValidator(_amount_text), AfterValidator(_four_places)]
# A bill's amount, its bounds in JSON Schema's words: on an optional field, pydantic printed
# `ge`, `max_digits` and `decimal_places` into the published schema as they are.
BillAmount = Annotated[
    Decimal,
    BeforeValidator(_amount_text),
    Field(ge=0, max_digits=14, decimal_places=4),  # before four places: 1e30 was a 500
    AfterValidator(_four_places),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 9999999999.9999},
                {
                    "type": "string",
                    "pattern": r"^\s*[+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][-+]?[0-9]+)?\s*$",
                },
            ],
            "description": "at most 10 digits before the point and 4 after it",
        }
    ),
]
ShortText = Annotated[str, StringConstraints(max_length=200)]


def _reject_nul(value: Any, path: str = "") -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    elif isinstance(value, list):
        for item in value:
            _reject_nul(item)


def _numbers_allowed(node: Any) -> Any:
    """A JSON schema where every free-text string may also be sent as a number (a string
    with a pattern is no free text: an id or an amount, whose numbers are documented)."""
    if isinstance(node, list):
        return [_numbers_allowed(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "string" and not {"format", "enum", "const", "pattern"} & node.keys():
        # whole numbers only: one with a fraction or an exponent is refused (9002)
        return {"anyOf": [node, {"type": "integer"}]}
    return {key: _numbers_allowed(value) for key, value in node.items()}


def _document_number_coercion(schema: dict[str, Any]) -> None:
    # Vendor clients send mobiles, ids and codes as JSON numbers; they are accepted as their
    # text (`coerce_numbers_to_str`), so the documented schema must say so too.
    properties = schema.get("properties")
    if isinstance(properties, dict):
        schema["properties"] = _numbers_allowed(properties)


def _takes_text(annotation: Any) -> bool:
    return annotation is str or any(_takes_text(arg) for arg in get_args(annotation))


@cache
def _text_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` that hold text (alone, optional or in a list)."""
    return frozenset(n for n, f in model.model_fields.items() if _takes_text(f.annotation))


@functools.cache
def _field_names(model: type[BaseModel]) -> tuple[frozenset[str], dict[str, str]]:
    """A body's field names as sent (alias and Python name), and each alias by its letters
    in lower case (the key a near miss is looked up by)."""
    known: set[str] = set()
    near: dict[str, str] = {}
    for name, field in model.model_fields.items():
        alias = field.alias or name
        known |= {name, alias}
        near[alias.replace("_", "").lower()] = alias
    return frozenset(known), near


_NO_TEXT = (
    "a number with a fraction or an exponent, or of more than 4,300 digits, does not stand "
    "for text; send it as a JSON string"
)


class Body(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        coerce_numbers_to_str=True,
        json_schema_extra=_document_number_coercion,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _whole_numbers_for_text(cls, value: Any, info: ValidationInfo) -> Any:
        # A number stands for text as the digits it writes (`coerce_numbers_to_str`). One
        # with a fraction or an exponent has no one such text: `1e400` was read as infinity
        # and became the code "inf", `1e2` the code "100.0". Refused instead (9002).
        if info.field_name not in _text_fields(cls):
            return value
        if type(value) is float:
            raise ValueError(_NO_TEXT)
        if type(value) is list:
            for i, item in enumerate(value):
                if type(item) is float:  # named by its place, as the list's other items are
                    alias = cls.model_fields[info.field_name].alias or info.field_name
                    raise InvalidField(f"{alias}[{i}]", _NO_TEXT)
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_near_misses(cls, data: Any) -> Any:
        # Unknown fields are ignored (spec §1), but one that is a known field in another case
        # or with underscores is a typo, not another field: ignored, `"validtill"` in a PATCH
        # answered 200 and the campaign ran on. Refused naming the field it stands for.
        if isinstance(data, dict):
            known, near = _field_names(cls)
            for key in data:
                if isinstance(key, str) and key not in known:
                    meant = near.get(key.replace("_", "").lower())
                    if meant is not None:
                        raise InvalidField(key, f"not a field of this call; did you mean {meant}?")
        return data

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL cannot store NUL in text; refuse it up front as a 400, never a 500.
        _reject_nul(value)
        return value


class CustomerIdentifiers(Body):
    """Any of the customer's identifiers; all that are given must name the same customer."""

    id: CustomerId | None = None
    mobile: ShortText | None = None
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    external_id: ShortText | None = None

    # As blank text in the other identifiers: a client without the id sends "" or " ".
    _blank_id_is_not_given = field_validator("id", mode="before")(blank_as_none)

    def ref(self) -> CustomerRef:
        return CustomerRef(
            id=self.id, mobile=self.mobile, email=self.email, external_id=self.external_id
        )


REVOKE_EXAMPLES = {
    "codes": {
        "summary": "Revoke coupons by code",
        "value": {"couponSeriesId": 415446, "couponCodes": ["3138309782", "3636820421"]},
    },
    "mobile": {
        "summary": "Revoke a customer's coupons by mobile",
        "value": {"couponSeriesId": 415446, "customer": {"mobile": "11223569865"}},
    },
    "externalId": {
        "summary": "Revoke by external id",
        "value": {"couponSeriesId": 415446, "customer": {"externalId": "000003873472"}},
    },
    "id": {
        "summary": "Revoke by customer id",
        "value": {"couponSeriesId": 415446, "customer": {"id": "555567088"}},
    },
    "email": {
        "summary": "Revoke by email",
        "value": {"couponSeriesId": 415446, "customer": {"email": "Tomswayer@example.com"}},
    },
}
REINSTATE_EXAMPLES = {
    "codes": {
        "summary": "Reinstate coupons by code",
        "value": {
            "couponSeriesId": 415446,
            "couponCodes": ["3138309782"],
            "reason": "revoked by mistake",
        },
    },
    "undo": {
        "summary": "Undo one revoke call by its request id (its X-Request-Id)",
        "value": {"revokeRequestId": "req-2024-0042", "reason": "wrong list"},
    },
}


def _revoke_example(
    done: list[tuple[int, str, int]], failed: dict[FailureReason, list[str]] | None = None
) -> dict[str, Any]:
    """A response as the API writes it, from an outcome of (coupon id, code, customer id)."""
    outcome = Outcome(
        done=[Coupon(i, 0, code, CouponState.ISSUED, customer) for i, code, customer in done],
        failed=failed or {},
    )
    entity = render.outcome(outcome, CodeCase.UPPER, "revokedCoupons", "failedToRevoke")
    return dict(orjson.loads(success_body(entity)))


def _error(code: int, message: str) -> dict[str, Any]:
    return dict(orjson.loads(failure_body(code, message)))


# The vendor's response examples (its shapes and codes), shown in /docs.
REVOKE_RESPONSE_EXAMPLES = {
    "codes": {
        "summary": "Revoked by coupon codes",
        "value": _revoke_example(
            [(1239817476, "3636820421", 555567088), (1239817475, "3138309782", 555567088)]
        ),
    },
    "generic": {
        "summary": "Revoked a customer's generic coupon",
        "value": _revoke_example([(1247326281, "SALE20", 555567088)]),
    },
    "partial": {
        "summary": "Partly revoked: one code already revoked, one unknown",
        "value": _revoke_example(
            [(24454630, "3H2G6OAGPAQ3", 341612616)],
            {FailureReason.NOT_FOUND_IN_SERIES: ["V6AUE8G5890V", "CODE123"]},
        ),
    },
    "redeemed": {
        "summary": "Nothing revoked: the code was redeemed (still HTTP 200)",
        "value": _revoke_example([], {FailureReason.REDEEMED: ["CODE6"]}),
    },
}

REVOKE_ERROR_EXAMPLES = {
    "756": {
        "summary": "Neither codes nor customer",
        "value": _error(756, "CouponCode/s or customer info is mandatory"),
    },
    "108": {
        "summary": "Generic code without a customer",
        "value": _error(108, "Unsupported coupons series config with client handling type GENERIC"),
    },
    "712": {
        "summary": "Series expired",
        "value": _error(712, "Coupon Series / Campaign has expired"),
    },
}


class RevokeBody(Body):
    """Which coupons to revoke: codes (at most 50), a customer's, or both."""

    coupon_series_id: Int | None = Field(default=None, ge=1, le=2**62)
    # No cap on entries here: the limit is 50 *distinct* codes (9003, spec §5), counted after
    # trimming and de-duplication; the 1 MiB body limit already bounds the list.
    coupon_codes: list[Code] | None = None
    customer: CustomerIdentifiers | None = None
    reason: Annotated[str, StringConstraints(max_length=MAX_REASON_LENGTH)] | None = None


class ReinstateBody(RevokeBody):
    """Like revoke; or `revokeRequestId` to undo one earlier revoke call."""

    revoke_request_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class RevokedCoupon(BaseModel):
    couponId: int
    couponCode: str
    issuedToUserId: int | None


class FailureGroup(BaseModel):
    errorCode: int
    errorMessage: str
    couponCodes: list[str]


class RevokeEntity(BaseModel):
    totalCount: int
    failedCount: int
    revokedCoupons: list[RevokedCoupon]
    failedToRevoke: list[FailureGroup]


class ReinstateEntity(BaseModel):
    totalCount: int
    failedCount: int
    reinstatedCoupons: list[RevokedCoupon]
    failedToReinstate: list[FailureGroup]


class ErrorItem(BaseModel):
    status: bool
    code: int
    message: str


class Envelope(BaseModel):
    warnings: list[object]
    errors: list[ErrorItem]
    success: bool


class RevokeResponse(Envelope):
    entity: RevokeEntity


class ReinstateResponse(Envelope):
    entity: ReinstateEntity


class ErrorResponse(Envelope):
    pass


class TokenRequest(Body):
    key: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    secret: Annotated[str, StringConstraints(min_length=1, max_length=500)]


def _storable_valid_till(value: datetime | date | None) -> datetime | date | None:
    # Extreme offsets (9999-12-31T23:59-12:00) overflow when moved to UTC; keep every
    # value storable and comparable on both databases instead of answering 500.
    if value is None:
        return None  # a change that leaves validTill alone
    year = value.year
    if isinstance(value, datetime) and value.tzinfo is not None:
        # The year that is stored: 1970-01-01T00:00+14:00 is still 1969 in UTC.
        try:
            year = value.astimezone(UTC).year
        except OverflowError:
            raise ValueError("must be a date between 1970 and 9998") from None
    if not 1970 <= year <= 9998:
        raise ValueError("must be a date between 1970 and 9998")
    return value


_NUMBER_TEXT = re.compile(r"\s*[-+]?\d+(\.\d*)?\s*")


def _bare_date_stays_a_date(value: Any) -> Any:
    # FastAPI validates decoded JSON in Python mode, where the union would read
    # "YYYY-MM-DD" as midnight; a bare date means the whole day, so keep it a date.
    if isinstance(value, str) and _BARE_DATE.fullmatch(value.strip()):
        return date.fromisoformat(value.strip())
    # pydantic would read a number (or a string of digits) as Unix seconds: 20301231 became
    # 1970-08-23 and ended the campaign at once. The contract takes dates and ISO-8601 only.
    if (value is not None and not isinstance(value, date | str)) or (
        isinstance(value, str) and _NUMBER_TEXT.fullmatch(value)
    ):
        raise ValueError("must be a date (YYYY-MM-DD) or an ISO-8601 date and time")
    return value


class SeriesBody(Body):
    description: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    client_handling_type: Literal["DISC_CODE", "DISC_CODE_PIN", "GENERIC", "GENERIC_REDEEMABLE"]
    generic_code: NewCode | None = None
    valid_till: datetime | date
    discount_type: Literal["ABS", "PERC"]
    discount_value: Amount = Field(max_digits=14, decimal_places=4)

    _valid_till_after = field_validator("valid_till", mode="after")(_storable_valid_till)
    _valid_till_before = field_validator("valid_till", mode="before")(_bare_date_stays_a_date)


class SeriesPatchBody(Body):
    """What may change on a series: its end (end a campaign early, or extend it) and its
    description. Fields left out stay as they are."""

    description: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    valid_till: datetime | date | None = None

    _valid_till_after = field_validator("valid_till", mode="after")(_storable_valid_till)
    _valid_till_before = field_validator("valid_till", mode="before")(_bare_date_stays_a_date)

    # A series' other fields are fixed once it exists. Ignored like unknown fields, a
    # `{"discountValue": 99}` answered 200 and the caller believed the discount changed.
    client_handling_type: SkipJsonSchema[Any] = None
    generic_code: SkipJsonSchema[Any] = None
    discount_type: SkipJsonSchema[Any] = None
    discount_value: SkipJsonSchema[Any] = None

    @field_validator(
        "client_handling_type", "generic_code", "discount_type", "discount_value", mode="before"
    )
    @classmethod
    def _fixed(cls, value: Any) -> Any:
        raise ValueError(
            "cannot be changed once a series exists; PATCH changes validTill and description"
        )


SERIES_PATCH_EXAMPLES: dict[str, dict[str, Any]] = {
    "end": {
        "summary": "end a campaign early: its coupons expire at once",
        "value": {"validTill": "2026-01-31T18:00:00Z"},
    },
    "describe": {
        "summary": "change the description",
        "value": {"description": "Spring 15% (ended early: leaked)"},
    },
}


class CodeWithPin(Body):
    code: NewCode
    pin: (
        Annotated[str, BeforeValidator(trimmed_pin), StringConstraints(min_length=1, max_length=20)]
        | None
    ) = None


def _code_kind(value: Any) -> str:
    # Tags in parentheses: `field_name` leaves pydantic's labels out of the field it names,
    # so a bad pin is `codes[3].pin`, not the text form's complaint about `codes[3]`.
    return "(object)" if isinstance(value, dict) else "(text)"


CodeItem = Annotated[
    Annotated[NewCode, Tag("(text)")] | Annotated[CodeWithPin, Tag("(object)")],
    Discriminator(_code_kind),
]


class CodesBody(Body):
    """Either `codes` (at most 10,000) or `generate` (a number of codes to make)."""

    codes: list[CodeItem] | None = Field(default=None, max_length=10_000)
    generate: Int | None = Field(default=None, ge=1, le=10_000)


class CustomerBody(Body):
    mobile: NewMobile | None = None
    email: NewEmail | None = None
    external_id: ShortText | None = None
    first_name: ShortText | None = None
    last_name: ShortText | None = None


class IssueBody(Body):
    series_id: Int = Field(ge=1, le=2**62)
    customer: CustomerIdentifiers


class IssueMultipleBody(IssueBody):
    count: Int = Field(ge=1, le=500)


class RedeemLineBody(Body):
    code: Annotated[str, StringConstraints(min_length=1, max_length=MAX_CODE_LENGTH)]
    pin: Annotated[str, StringConstraints(max_length=20)] | None = None


class RedeemBody(Body):
    customer: CustomerIdentifiers
    transaction_number: ShortText | None = None
    bill_amount: BillAmount | None = None
    redemption_request_list: list[RedeemLineBody] = Field(min_length=1, max_length=50)


class ReactivateBody(Body):
    redemption_ids: list[Annotated[Int, Field(ge=1, le=2**62)]] = Field(min_length=1, max_length=50)
