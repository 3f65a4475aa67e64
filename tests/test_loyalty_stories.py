"""Loyalty points, told as stories over real gRPC (mutual TLS), with the gateway's
clock set by the story: lots that expire, redeemed earliest-expiring first, expired
through the journal, and the warning list operators send before that."""
import calendar
import time

import grpc
import pytest
from cryptography import x509

from cardgate.fastcore.records import Op
from cardgate.v1 import (authorization_pb2, common_pb2, issuing_pb2, issuing_pb2_grpc, loyalty_pb2,
                         loyalty_pb2_grpc)

from conftest import LiveGateway
from helpers import (beyond_request_records, create_range, issue, journal_entries, make_pan,
                     new_id, snapshot)

R = common_pb2


def at(year, month, day, hour=12):
    return calendar.timegm((year, month, day, hour, 0, 0))


def end_of(year, month, day):
    return at(year, month, day, 0) + 86400 - 1


@pytest.fixture
def story(tmp_path):
    now = [at(2027, 1, 15)]
    gw = LiveGateway(tmp_path / "data", clock=lambda: now[0], writer_idle_tick_s=0.05)
    gw.loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(gw.channel)
    gw.operator_loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(gw.open("operator-1"))
    create_range(gw)
    yield gw, now
    gw.close()


def earn(gw, pan, points, valid_until_s):
    return gw.loyalty.EarnPoints(loyalty_pb2.EarnPointsRequest(
        request_id=new_id(), pan=pan, points=points, valid_until_s=valid_until_s)).authorization


def redeem(gw, pan, points):
    return gw.loyalty.RedeemPoints(loyalty_pb2.RedeemPointsRequest(
        request_id=new_id(), pan=pan, points=points)).authorization


def points_of(gw, pan):
    answer = gw.loyalty.GetPoints(loyalty_pb2.GetPointsRequest(pan=pan))
    return answer.points, [(e.valid_until_s, e.points) for e in answer.expiring]


def test_january_points_are_redeemed_first_and_their_rest_expires_at_its_date(story):
    gw, now = story
    pan = make_pan(1)
    issue(gw, [pan])
    january, march = end_of(2027, 6, 30), end_of(2027, 9, 30)
    assert earn(gw, pan, 300, january).result_code == R.RESULT_CODE_APPROVED   # activates it
    now[0] = at(2027, 3, 10)
    assert earn(gw, pan, 200, march).balance.balance_minor == 500
    assert earn(gw, pan, 40, 0).result_code == R.RESULT_CODE_APPROVED          # never expire

    spent = redeem(gw, pan, 250)
    assert spent.result_code == R.RESULT_CODE_APPROVED and spent.balance.balance_minor == 290
    assert points_of(gw, pan) == (290, [(january, 50), (march, 200)])   # January's went first
    assert redeem(gw, pan, 291).result_code == R.RESULT_CODE_DECLINED_INSUFFICIENT_POINTS

    now[0] = january                          # its very last second: still usable
    assert points_of(gw, pan)[0] == 290
    now[0] = january + 1                      # the writer expires the rest on its idle tick
    deadline = time.monotonic() + 10
    while points_of(gw, pan)[0] != 240 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert points_of(gw, pan) == (240, [(march, 200)])
    expired = [e for e in journal_entries(gw.gateway.store) if e.op == Op.POINTS_EXPIRY]
    assert [(e.amount_minor, e.currency, e.time_s) for e in expired] == [(50, "PTS", january + 1)]
    assert redeem(gw, pan, 240).result_code == R.RESULT_CODE_APPROVED


def test_the_expiring_soon_list_names_the_card_30_days_before(story):
    gw, now = story
    soon, later = make_pan(2), make_pan(3)
    issue(gw, [soon, later])
    expiry = end_of(2027, 3, 31)
    earn(gw, soon, 120, expiry)
    earn(gw, later, 80, end_of(2027, 12, 31))

    def listed(within_days=30):
        return [(e.masked_pan, e.points, e.valid_until_s) for e in gw.operator_loyalty.ListExpiringPoints(
            loyalty_pb2.ListExpiringPointsRequest(within_days=within_days))]

    now[0] = expiry - 31 * 86400
    assert listed() == []
    now[0] = expiry - 30 * 86400
    assert listed() == [(f"{soon[:6]}******{soon[-4:]}", 120, expiry)]
    assert len(listed(365)) == 2


def set_program(gw, kind, n, pending_days=0, ranges=(1,), program_id=1, offset_min=60):
    return gw.operator_loyalty.SetProgram(loyalty_pb2.SetProgramRequest(
        request_id=new_id(), program_id=program_id, expiry_kind=kind, expiry_n=n,
        pending_days=pending_days, utc_offset_min=offset_min, range_ids=ranges))


@pytest.mark.parametrize("kind, n, expected_local_end", [
    (loyalty_pb2.POINTS_EXPIRY_KIND_DAYS_AFTER, 30, (2027, 2, 14)),
    (loyalty_pb2.POINTS_EXPIRY_KIND_MONTH_END_AFTER, 1, (2027, 2, 28)),
    (loyalty_pb2.POINTS_EXPIRY_KIND_MONTH_END_AFTER, 11, (2027, 12, 31)),
    (loyalty_pb2.POINTS_EXPIRY_KIND_MONTH_END_AFTER, 12, (2028, 1, 31)),
    (loyalty_pb2.POINTS_EXPIRY_KIND_YEAR_END_AFTER, 0, (2027, 12, 31)),
    (loyalty_pb2.POINTS_EXPIRY_KIND_YEAR_END_AFTER, 12, (2028, 12, 31)),
])
def test_the_programs_policy_dates_each_lot_in_local_time(story, kind, n, expected_local_end):
    gw, now = story                           # 2027-01-15 12:00 UTC, 13:00 at UTC+1
    assert set_program(gw, kind, n).result_code == R.RESULT_CODE_APPROVED
    pan = make_pan(4)
    issue(gw, [pan])
    assert earn(gw, pan, 10, 0).result_code == R.RESULT_CODE_APPROVED
    last_local_second = end_of(*expected_local_end) - 3600      # 23:59:59 at UTC+1
    assert points_of(gw, pan) == (10, [(last_local_second, 10)])


def test_points_wait_out_the_returns_window_before_they_can_be_spent(story):
    gw, now = story
    assert set_program(gw, loyalty_pb2.POINTS_EXPIRY_KIND_NEVER, 0, pending_days=14).result_code == \
        R.RESULT_CODE_APPROVED
    pan = make_pan(5)
    issue(gw, [pan])
    earn(gw, pan, 300, 0)
    answer = gw.loyalty.GetPoints(loyalty_pb2.GetPointsRequest(pan=pan))
    assert (answer.points, answer.pending_points, list(answer.expiring)) == (300, 300, [])
    assert redeem(gw, pan, 100).result_code == R.RESULT_CODE_DECLINED_POINTS_PENDING
    assert redeem(gw, pan, 301).result_code == R.RESULT_CODE_DECLINED_INSUFFICIENT_POINTS
    now[0] += 14 * 86400
    assert redeem(gw, pan, 100).result_code == R.RESULT_CODE_APPROVED
    assert gw.loyalty.GetPoints(loyalty_pb2.GetPointsRequest(pan=pan)).pending_points == 0


def test_a_range_belongs_to_one_program_and_bad_programs_change_nothing(story):
    gw, _ = story
    assert set_program(gw, loyalty_pb2.POINTS_EXPIRY_KIND_NEVER, 0).result_code == R.RESULT_CODE_APPROVED
    assert set_program(gw, loyalty_pb2.POINTS_EXPIRY_KIND_NEVER, 0, program_id=2).result_code == \
        R.RESULT_CODE_DECLINED_RANGE_IN_ANOTHER_PROGRAM
    assert set_program(gw, loyalty_pb2.POINTS_EXPIRY_KIND_NEVER, 0, ranges=(9,),
                       program_id=2).result_code == R.RESULT_CODE_DECLINED_UNKNOWN_CARD_RANGE
    for bad in (dict(kind=0, n=0), dict(kind=loyalty_pb2.POINTS_EXPIRY_KIND_NEVER, n=0,
                                         pending_days=367)):
        with pytest.raises(grpc.RpcError) as caught:
            set_program(gw, **bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_operators_adjust_points_with_a_reason_and_their_identity_and_members_give_points(story):
    gw, now = story
    alice, bob, blocked = make_pan(6), make_pan(7), make_pan(8)
    issue(gw, [alice, bob, blocked])
    earn(gw, alice, 100, end_of(2027, 3, 31))
    earn(gw, alice, 50, end_of(2027, 6, 30))
    credit = gw.operator_loyalty.AdjustPoints(loyalty_pb2.AdjustPointsRequest(
        request_id=new_id(), pan=alice, points=25, direction=issuing_pb2.ADJUSTMENT_DIRECTION_CREDIT,
        reason=R.ADJUSTMENT_REASON_GOODWILL)).authorization
    assert credit.result_code == R.RESULT_CODE_APPROVED and credit.balance.balance_minor == 175
    operator = x509.load_pem_x509_certificate((gw.certs / "operator-1.crt").read_bytes())
    adjusted = [e for e in journal_entries(gw.gateway.store) if e.op == Op.ADJUST_POINTS]
    assert [(e.amount_minor, e.reason, e.actor) for e in adjusted] == \
        [(25, R.ADJUSTMENT_REASON_GOODWILL, operator.serial_number & 0xFFFF_FFFF)]

    gw.issuing.SetCardStatus(issuing_pb2.SetCardStatusRequest(
        request_id=new_id(), pan=blocked, status=authorization_pb2.CARD_STATUS_BLOCKED))
    # At a terminal, the member gives points with the giving card's PIN.
    bureau = issuing_pb2_grpc.IssuingServiceStub(gw.open("bureau-1"))
    bureau.SetCardPin(issuing_pb2.SetCardPinRequest(request_id=new_id(), pan=alice, pin=PIN))
    assert transfer(gw, alice, bob, 1, pin="").result_code == R.RESULT_CODE_DECLINED_PIN_REQUIRED
    before = snapshot(gw.gateway.store)
    refused = transfer(gw, alice, blocked, 10)
    assert refused.result_code == R.RESULT_CODE_DECLINED_RECEIVING_CARD_UNUSABLE
    assert beyond_request_records(snapshot(gw.gateway.store)) == \
        beyond_request_records(before)

    given = transfer(gw, alice, bob, 120)          # 100 of March's lot, then 20 of June's
    assert given.result_code == R.RESULT_CODE_APPROVED and given.balance.balance_minor == 55
    assert points_of(gw, bob) == (120, [(end_of(2027, 3, 31), 120)])   # never longer-lived
    with pytest.raises(grpc.RpcError) as caught:
        transfer(gw, alice, alice, 1)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "to_pan" in caught.value.details()


PIN = "2468"


def transfer(gw, pan, to_pan, points, pin=PIN):
    return gw.loyalty.TransferPoints(loyalty_pb2.TransferPointsRequest(
        request_id=new_id(), pan=pan, to_pan=to_pan, points=points, pin=pin)).authorization
