"""A gift card's life, over real gRPC: pending until its first load, limits per range,
corrections with a reason, clearing, and deactivation for good."""
import grpc
import pytest

from cardgate.fastcore.records import Op
from cardgate.v1 import authorization_pb2, common_pb2, issuing_pb2

from helpers import (balance, eur, funded_card, issue, journal_entries, load, make_pan, new_id,
                     purchase)

R = common_pb2


def test_a_gift_card_from_issue_to_deactivation(live_gateway):
    gw = live_gateway
    assert gw.issuing.CreateCardRange(issuing_pb2.CreateCardRangeRequest(
        request_id=new_id(), range_id=1, iin_prefix="627700", pan_length=16, currency="EUR",
        name="Gift 500", balance_max_minor=500_00, load_per_day_max_minor=300_00)).result_code \
        == R.RESULT_CODE_APPROVED
    pan = make_pan(1)
    issue(gw, [pan])
    assert purchase(gw, pan, 1_00).result_code == R.RESULT_CODE_DECLINED_CARD_NOT_ACTIVE

    first = load(gw, pan, 250_00)                                # activates it
    assert first.result_code == R.RESULT_CODE_APPROVED
    assert gw.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan)).status == \
        authorization_pb2.CARD_STATUS_ACTIVE
    assert load(gw, pan, 50_01).result_code == R.RESULT_CODE_DECLINED_LOAD_LIMIT_EXCEEDED
    assert load(gw, pan, 50_00).result_code == R.RESULT_CODE_APPROVED   # 300.00 today

    def adjust(amount, direction, reason):
        return gw.issuing.AdjustBalance(issuing_pb2.AdjustBalanceRequest(
            request_id=new_id(), pan=pan, amount=eur(amount), direction=direction,
            reason=reason)).authorization

    assert adjust(250_00, issuing_pb2.ADJUSTMENT_DIRECTION_CREDIT,
                  R.ADJUSTMENT_REASON_GOODWILL).balance.balance_minor == 550_00
    assert adjust(60_00, issuing_pb2.ADJUSTMENT_DIRECTION_DEBIT,
                  R.ADJUSTMENT_REASON_CORRECTION).balance.balance_minor == 490_00
    assert purchase(gw, pan, 40_00).result_code == R.RESULT_CODE_APPROVED

    deactivate = issuing_pb2.DeactivateCardRequest(request_id=new_id(), pan=pan)
    assert gw.issuing.DeactivateCard(deactivate).authorization.result_code == \
        R.RESULT_CODE_DECLINED_BALANCE_NOT_ZERO
    cleared = gw.issuing.ClearBalance(issuing_pb2.ClearBalanceRequest(
        request_id=new_id(), pan=pan, reason=R.ADJUSTMENT_REASON_BREAKAGE)).authorization
    assert cleared.approved.amount_minor == 450_00 and cleared.balance.balance_minor == 0
    closed = gw.issuing.DeactivateCard(issuing_pb2.DeactivateCardRequest(request_id=new_id(), pan=pan))
    assert closed.authorization.result_code == R.RESULT_CODE_APPROVED
    assert load(gw, pan, 1_00).result_code == R.RESULT_CODE_DECLINED_CARD_CLOSED
    assert balance(gw, pan).balance_minor == 0

    kinds = [(e.op, e.amount_minor, e.reason) for e in journal_entries(gw.gateway.store)
             if e.op in (Op.ADJUST, Op.CLEAR)]
    assert kinds == [(Op.ADJUST, 250_00, R.ADJUSTMENT_REASON_GOODWILL),
                     (Op.ADJUST, 60_00, R.ADJUSTMENT_REASON_CORRECTION),
                     (Op.CLEAR, 450_00, R.ADJUSTMENT_REASON_BREAKAGE)]


def test_a_load_over_the_range_balance_maximum_is_declined(live_gateway):
    gw = live_gateway
    gw.issuing.CreateCardRange(issuing_pb2.CreateCardRangeRequest(
        request_id=new_id(), range_id=1, iin_prefix="627700", pan_length=16, currency="EUR",
        balance_max_minor=100_00))
    pan = make_pan(2)
    issue(gw, [pan])
    assert load(gw, pan, 100_01).result_code == R.RESULT_CODE_DECLINED_BALANCE_LIMIT_EXCEEDED
    assert load(gw, pan, 100_00).result_code == R.RESULT_CODE_APPROVED


def test_an_adjustment_needs_a_reason(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 3, 10_00)
    with pytest.raises(grpc.RpcError) as caught:
        gw.issuing.AdjustBalance(issuing_pb2.AdjustBalanceRequest(
            request_id=new_id(), pan=pan, amount=eur(1_00),
            direction=issuing_pb2.ADJUSTMENT_DIRECTION_CREDIT))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in caught.value.details()
