"""The HTTP side of one batch: revoke its codes, and tell "already revoked" from "unknown"."""

from __future__ import annotations

from coupons.client import CodeCase, CouponApiError, CouponApiUnavailable, CouponClient
from coupons.domain.codes import CodeCase as Case
from coupons.domain.codes import normalize
from coupons.entrypoints.bulk_revoke.codes_file import Line
from coupons.entrypoints.bulk_revoke.journal import Row, RunSpec
from coupons.entrypoints.bulk_revoke.results import OUTCOME_OF_ERROR, Outcome

# The server's answer for one code, before it is tied to its line: code, outcome, errorCode,
# couponId. Codes come back written per `couponCodeCase`; they are matched by the domain's key.
Answer = tuple[str, str, str, str]


def _key(spec: RunSpec, code: str) -> str:
    """The key a line and its answer share: the domain's, of the code written as the answer
    writes it. The key of the line as sent can differ: a code holding a dotless i comes back
    in upper case with a plain I, and case folding keeps the two apart."""
    return normalize(Case[spec.case].render(code))


def revoke_batch(client: CouponClient, spec: RunSpec, lines: list[Line], key: str) -> list[Row]:
    """Revoke one batch of distinct valid codes; one row per line, in file order."""
    result = client.revoke(
        series_id=spec.series,
        codes=[line.code for line in lines],
        reason=spec.reason,
        code_case=code_case(spec.case),
        dry_run=spec.dry_run,
        idempotency_key=key,
    )
    found: dict[str, Answer] = {}
    done = Outcome.WOULD_REVOKE if spec.dry_run else Outcome.REVOKED
    for coupon in result.changed:
        found[_key(spec, coupon.coupon_code)] = (
            coupon.coupon_code,
            done.value,
            "",
            str(coupon.coupon_id),
        )
    unclear: list[str] = []
    # The check asks with the file's own spelling: written back per --case, a code holding a
    # dotless i comes in upper case with a plain I, whose matching key is no longer the
    # coupon's, and the check missed it (an already revoked code reported not found).
    sent = {_key(spec, line.code): line.code for line in lines}
    for group in result.failed:
        for code in group.coupon_codes:
            if group.error_code == 682:
                unclear.append(sent.get(_key(spec, code), code))
            outcome = OUTCOME_OF_ERROR.get(group.error_code, Outcome.FAILED)
            found[_key(spec, code)] = (code, outcome.value, str(group.error_code), "")
    if unclear:
        try:
            found.update(tell_revoked_from_unknown(client, spec, unclear))
        except CouponApiError as error:
            # The revoke itself was applied: whatever the check met, this batch reached the
            # server, and its journal must stay for the rerun (the run said "nothing was
            # revoked" and dropped it).
            raise CouponApiUnavailable(error.code, error.message, error.http_status) from error
    rows: list[Row] = []
    for line in lines:
        answer = found.get(_key(spec, line.code), (line.code, Outcome.FAILED.value, "", ""))
        rows.append((line.number, *answer))
    return rows


def tell_revoked_from_unknown(
    client: CouponClient, spec: RunSpec, codes: list[str]
) -> dict[str, Answer]:
    """682 means "not in the series" or "already revoked"; a dry-run reinstate tells which."""
    check = client.reinstate(
        series_id=spec.series, codes=codes, code_case=code_case(spec.case), dry_run=True
    )
    found: dict[str, Answer] = {}
    for coupon in check.changed:
        found[_key(spec, coupon.coupon_code)] = (
            coupon.coupon_code,
            Outcome.ALREADY_REVOKED.value,
            "682",
            str(coupon.coupon_id),
        )
    for group in check.failed:
        for code in group.coupon_codes:
            found[_key(spec, code)] = (code, Outcome.NOT_FOUND.value, "682", "")
    return found


def code_case(value: str) -> CodeCase:
    """The option's value as the client's type (the command has validated it)."""
    if value == "LOWER":
        return "LOWER"
    if value == "AS_IT_IS":
        return "AS_IT_IS"
    return "UPPER"
