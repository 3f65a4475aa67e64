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


def test_closing_pays_the_value_out_or_moves_it_to_another_card_in_one_step(live_gateway):
    gw = live_gateway
    gw.issuing.CreateCardRange(issuing_pb2.CreateCardRangeRequest(
        request_id=new_id(), range_id=1, iin_prefix="627700", pan_length=16, currency="EUR",
        name="Gift", balance_max_minor=100_00))
    old, new, third = make_pan(21), make_pan(22), make_pan(23)
    issue(gw, [old, new, third])
    load(gw, old, 60_00)
    load(gw, third, 50_00)

    def close(pan, disposition, to_pan="", request_id=None):
        return gw.issuing.DeactivateCard(issuing_pb2.DeactivateCardRequest(
            request_id=request_id or new_id(), pan=pan, disposition=disposition, to_pan=to_pan,
            reason=R.ADJUSTMENT_REASON_CARD_RETIRED)).authorization

    for to_pan, disposition, field in ((old, issuing_pb2.CLOSE_DISPOSITION_MOVE, "to_pan"),
                                       (new, issuing_pb2.CLOSE_DISPOSITION_PAYOUT, "to_pan"),
                                       ("", issuing_pb2.CLOSE_DISPOSITION_MOVE, "to_pan"),
                                       ("", 7, "disposition")):
        with pytest.raises(grpc.RpcError) as refused:
            close(old, disposition, to_pan)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith(field), refused.value.details()

    rid = new_id()
    moved = close(old, issuing_pb2.CLOSE_DISPOSITION_MOVE, new, rid)
    assert moved.result_code == R.RESULT_CODE_APPROVED and moved.approved.amount_minor == 60_00
    assert moved.balance.balance_minor == 0
    assert close(old, issuing_pb2.CLOSE_DISPOSITION_MOVE, new, rid) == moved            # a retry
    assert balance(gw, new).balance_minor == 60_00
    assert gw.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=new)).status == \
        authorization_pb2.CARD_STATUS_ACTIVE                   # the value activated it
    assert purchase(gw, old, 1_00).result_code == R.RESULT_CODE_DECLINED_CARD_CLOSED

    # Over the receiving card's balance limit: nothing moves, nothing closes.
    assert close(third, issuing_pb2.CLOSE_DISPOSITION_MOVE, new).result_code == \
        R.RESULT_CODE_DECLINED_BALANCE_LIMIT_EXCEEDED
    assert purchase(gw, third, 1_00).result_code == R.RESULT_CODE_APPROVED

    paid = close(new, issuing_pb2.CLOSE_DISPOSITION_PAYOUT)
    assert paid.result_code == R.RESULT_CODE_APPROVED and paid.approved.amount_minor == 60_00
    assert close(third, issuing_pb2.CLOSE_DISPOSITION_MOVE, new).result_code == \
        R.RESULT_CODE_DECLINED_RECEIVING_CARD_UNUSABLE
    entries = [(e.op, e.debit_owner, e.credit_owner, e.amount_minor, e.reason)
               for e in journal_entries(gw.gateway.store) if e.op == Op.DEACTIVATE]
    assert [(amount, reason) for *_, amount, reason in entries] == \
        [(60_00, R.ADJUSTMENT_REASON_CARD_RETIRED)] * 2
    assert entries[0][2] == entries[1][1]          # the moved value is what was paid out
