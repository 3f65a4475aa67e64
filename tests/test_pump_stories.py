"""Two-phase payments at the pump, told as stories over real gRPC (mutual TLS)."""
import time

import pytest

from cardgate.fastcore.records import Op
from cardgate.v1 import authorization_pb2, common_pb2, issuing_pb2, issuing_pb2_grpc

from conftest import LiveGateway
from helpers import (balance, beyond_request_records, eur, funded_card, issue, journal_entries,
                     load, make_pan, new_id, purchase, refund, reverse, snapshot)

R = common_pb2


def preauthorize(gw, pan, amount_minor, partial=False, request_id=None):
    return gw.auth.PreAuthorize(authorization_pb2.PreAuthorizeRequest(
        request_id=request_id or new_id(), pan=pan, amount=eur(amount_minor),
        partial_approval_ok=partial))


def complete(gw, pan, hold_id, amount_minor, request_id=None):
    return gw.auth.CompletePreAuthorization(authorization_pb2.CompletePreAuthorizationRequest(
        request_id=request_id or new_id(), pan=pan, hold_id=hold_id,
        amount=eur(amount_minor))).authorization


def void(gw, hold_id):
    return gw.auth.VoidPreAuthorization(authorization_pb2.VoidPreAuthorizationRequest(
        request_id=new_id(), hold_id=hold_id)).authorization


def test_pump_preauthorizes_5000_dispenses_3210_55_and_the_rest_is_released(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 1, 6_000_00)
    held = preauthorize(gw, pan, 5_000_00)
    assert held.authorization.result_code == R.RESULT_CODE_APPROVED
    assert held.authorization.approved.amount_minor == 5_000_00
    assert held.authorization.balance.available_minor == 1_000_00
    assert held.authorization.balance.pending_minor == 5_000_00
    assert balance(gw, pan).available_minor == 1_000_00     # the hold shows while dispensing

    done = complete(gw, pan, held.hold_id, 3_210_55)
    assert done.result_code == R.RESULT_CODE_APPROVED
    assert done.approved.amount_minor == 3_210_55
    after = balance(gw, pan)
    assert (after.balance_minor, after.pending_minor, after.available_minor) == \
        (6_000_00 - 3_210_55, 0, 6_000_00 - 3_210_55)
    # A second completion, and a void of the settled hold, are refused and change nothing.
    before = snapshot(gw.gateway.store)
    assert complete(gw, pan, held.hold_id, 1_00).result_code == \
        R.RESULT_CODE_DECLINED_HOLD_ALREADY_COMPLETED
    assert void(gw, held.hold_id).result_code == R.RESULT_CODE_DECLINED_HOLD_ALREADY_COMPLETED
    assert beyond_request_records(snapshot(gw.gateway.store)) == \
        beyond_request_records(before)


def test_gift_card_at_the_pump_is_partially_approved_for_what_it_holds(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 2, 1_200_00)
    refused = preauthorize(gw, pan, 5_000_00)
    assert refused.authorization.result_code == R.RESULT_CODE_DECLINED_INSUFFICIENT_FUNDS
    held = preauthorize(gw, pan, 5_000_00, partial=True)
    assert held.authorization.result_code == R.RESULT_CODE_PARTIALLY_APPROVED
    assert held.authorization.approved.amount_minor == 1_200_00     # the pump stops there
    assert len(held.authorization.approval_code) == 6
    assert complete(gw, pan, held.hold_id, 1_200_01).result_code == \
        R.RESULT_CODE_DECLINED_COMPLETION_EXCEEDS_HOLD
    assert complete(gw, pan, held.hold_id, 1_200_00).result_code == R.RESULT_CODE_APPROVED
    assert balance(gw, pan).balance_minor == 0


def test_a_purchase_with_partial_approval_takes_what_is_there(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 3, 30_00)
    paid = gw.auth.Purchase(authorization_pb2.PurchaseRequest(
        request_id=new_id(), pan=pan, amount=eur(45_00), partial_approval_ok=True)).authorization
    assert paid.result_code == R.RESULT_CODE_PARTIALLY_APPROVED
    assert paid.approved.amount_minor == 30_00 and paid.balance.balance_minor == 0


def test_a_hold_left_open_is_released_by_its_timeout_and_the_journal_says_so(tmp_path):
    now = [1_790_000_000]
    gw = LiveGateway(tmp_path / "data", clock=lambda: now[0], hold_timeout_s=600,
                     writer_idle_tick_s=0.05)
    try:
        pan = funded_card(gw, 4, 100_00)
        held = preauthorize(gw, pan, 80_00)
        assert balance(gw, pan).available_minor == 20_00
        now[0] += 601                               # nobody completes; no other traffic
        deadline = time.monotonic() + 10
        while balance(gw, pan).available_minor != 100_00:
            assert time.monotonic() < deadline, "the idle writer never released the hold"
            time.sleep(0.05)
        expiry = [e for e in journal_entries(gw.gateway.store) if e.op == Op.HOLD_EXPIRY]
        assert len(expiry) == 1 and expiry[0].amount_minor == 80_00
        # The pump had dispensed: within the range's grace window (7 days unless the
        # range says) the completion is a forced capture, flagged for review ...
        late = complete(gw, pan, held.hold_id, 10_00)
        assert (late.result_code, late.forced_capture, late.flagged_for_review) == \
            (R.RESULT_CODE_APPROVED, True, True)
        assert late.balance.available_minor == 90_00 and "forced capture" in late.message
        # ... and after it, declined.
        other = preauthorize(gw, pan, 5_00)
        now[0] += 600 + 7 * 86400 + 1
        assert complete(gw, pan, other.hold_id, 5_00).result_code == \
            R.RESULT_CODE_DECLINED_HOLD_EXPIRED
    finally:
        gw.close()


def test_void_and_reversal_release_a_hold_once(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 5, 100_00)
    first = preauthorize(gw, pan, 60_00)
    assert void(gw, first.hold_id).approved.amount_minor == 60_00
    assert void(gw, first.hold_id).result_code == R.RESULT_CODE_DECLINED_HOLD_VOIDED
    assert complete(gw, pan, first.hold_id, 1_00).result_code == R.RESULT_CODE_DECLINED_HOLD_VOIDED
    second = preauthorize(gw, pan, 70_00)
    assert reverse(gw, second.hold_id).approved.amount_minor == 70_00
    assert balance(gw, pan).available_minor == 100_00
    # A pre-authorization reversed before it arrived never holds anything.
    lost = new_id()
    reverse(gw, lost)
    late = preauthorize(gw, pan, 10_00, request_id=lost)
    assert late.authorization.result_code == R.RESULT_CODE_DECLINED_ALREADY_REVERSED
    assert balance(gw, pan).available_minor == 100_00


@pytest.mark.parametrize("case", ["unknown hold", "another card", "other currency"])
def test_bad_completions_are_declined_and_change_nothing(live_gateway, case):
    gw = live_gateway
    pan = funded_card(gw, 6, 100_00)
    other = make_pan(7)
    issue(gw, [other])
    load(gw, other, 5_00)
    held = preauthorize(gw, pan, 50_00)
    before = snapshot(gw.gateway.store)
    if case == "unknown hold":
        answer = complete(gw, pan, new_id(), 10_00)
        expected = R.RESULT_CODE_DECLINED_HOLD_NOT_FOUND
    elif case == "another card":
        answer = complete(gw, other, held.hold_id, 10_00)
        expected = R.RESULT_CODE_DECLINED_CARD_MISMATCH
    else:
        answer = gw.auth.CompletePreAuthorization(authorization_pb2.CompletePreAuthorizationRequest(
            request_id=new_id(), pan=pan, hold_id=held.hold_id,
            amount=eur(10_00, "USD"))).authorization
        expected = R.RESULT_CODE_DECLINED_CURRENCY_MISMATCH
    assert answer.result_code == expected
    after = snapshot(gw.gateway.store)
    assert beyond_request_records(after) == \
        beyond_request_records(before)
    assert purchase(gw, pan, 50_00).result_code == R.RESULT_CODE_APPROVED  # the hold still stands
    assert purchase(gw, pan, 1).result_code == R.RESULT_CODE_DECLINED_INSUFFICIENT_FUNDS


def test_three_wrong_pins_block_the_card_until_the_issuer_unblocks_it(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 8, 100_00)
    bureau = issuing_pb2_grpc.IssuingServiceStub(gw.open("bureau-1"))
    assert bureau.SetCardPin(issuing_pb2.SetCardPinRequest(
        request_id=new_id(), pan=pan, pin="4711")).result_code == R.RESULT_CODE_APPROVED

    def pay(pin):
        return gw.auth.Purchase(authorization_pb2.PurchaseRequest(
            request_id=new_id(), pan=pan, amount=eur(5_00), pin=pin)).authorization

    assert pay("4711").result_code == R.RESULT_CODE_APPROVED
    for attempt in range(3):
        wrong = pay("1174")
        assert wrong.result_code == R.RESULT_CODE_DECLINED_WRONG_PIN
    assert wrong.balance.balance_minor == 95_00
    assert pay("4711").result_code == R.RESULT_CODE_DECLINED_CARD_BLOCKED
    unblocked = gw.issuing.SetCardStatus(issuing_pb2.SetCardStatusRequest(
        request_id=new_id(), pan=pan, status=authorization_pb2.CARD_STATUS_ACTIVE))
    assert unblocked.status == authorization_pb2.CARD_STATUS_ACTIVE
    assert pay("4711").result_code == R.RESULT_CODE_APPROVED


def test_a_completed_pump_payment_can_be_refunded_up_to_what_was_charged(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 9, 200_00)
    held = preauthorize(gw, pan, 150_00)
    completion_id = new_id()
    complete(gw, pan, held.hold_id, 80_00, request_id=completion_id)
    assert refund(gw, pan, 50_00, completion_id).result_code == R.RESULT_CODE_APPROVED
    assert refund(gw, pan, 30_01, completion_id).result_code == \
        R.RESULT_CODE_DECLINED_REFUND_EXCEEDS_ORIGINAL
    assert refund(gw, pan, 30_00, completion_id).result_code == R.RESULT_CODE_APPROVED
    assert balance(gw, pan).balance_minor == 200_00
    # The pre-authorization itself is not a payment to refund.
    assert refund(gw, pan, 1_00, held.hold_id).result_code == \
        R.RESULT_CODE_DECLINED_ORIGINAL_NOT_REFUNDABLE
