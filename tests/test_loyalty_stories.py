"""Loyalty points, told as stories over real gRPC (mutual TLS), with the gateway's
clock set by the story: lots that expire, redeemed earliest-expiring first, expired
through the journal, and the warning list operators send before that."""
import calendar
import time

import pytest

from cardgate.fastcore.records import Op
from cardgate.v1 import common_pb2, loyalty_pb2, loyalty_pb2_grpc

from conftest import LiveGateway
from helpers import create_range, issue, journal_entries, make_pan, new_id

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
