"""Subscription cards over real gRPC: a package of washes is used up, and a package whose
time is over has its units expired through the journal."""

from cardgate.fastcore.records import Op
from cardgate.v1 import authorization_pb2, common_pb2

from conftest import LiveGateway
from helpers import create_range, issue, journal_entries, make_pan, new_id

R = common_pb2
NOW = 1_790_000_000


def sell(gw, pan, units, valid_until_s):
    return gw.auth.SellPackage(authorization_pb2.SellPackageRequest(
        request_id=new_id(), pan=pan, units=units, valid_until_s=valid_until_s)).authorization


def use(gw, pan, units=1):
    return gw.auth.UseUnits(authorization_pb2.UseUnitsRequest(
        request_id=new_id(), pan=pan, units=units)).authorization


def test_ten_washes_are_used_and_the_eleventh_is_declined(tmp_path):
    now = [NOW]
    gw = LiveGateway(tmp_path / "data", clock=lambda: now[0])
    try:
        pan = make_pan(1)
        create_range(gw)
        issue(gw, [pan])
        sold = sell(gw, pan, 10, NOW + 90 * 86400)
        assert sold.result_code == R.RESULT_CODE_APPROVED and sold.balance.currency == "UNT"
        for wash in range(10):
            used = use(gw, pan)
            assert used.result_code == R.RESULT_CODE_APPROVED
            assert used.balance.balance_minor == 9 - wash
        assert use(gw, pan).result_code == R.RESULT_CODE_DECLINED_NO_UNITS_LEFT
        assert gw.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan)).units_left == 0
    finally:
        gw.close()


def test_an_expired_package_cannot_be_used_and_its_units_expire_in_the_journal(tmp_path):
    now = [NOW]
    gw = LiveGateway(tmp_path / "data", clock=lambda: now[0], writer_idle_tick_s=0.05)
    try:
        pan = make_pan(2)
        create_range(gw)
        issue(gw, [pan])
        sell(gw, pan, 20, NOW + 30 * 86400)
        use(gw, pan, 5)
        assert gw.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan)).units_left == 15
        now[0] += 31 * 86400
        assert use(gw, pan).result_code == R.RESULT_CODE_DECLINED_NO_UNITS_LEFT
        expired = [e for e in journal_entries(gw.gateway.store) if e.op == Op.PACKAGE_EXPIRY]
        assert [(e.amount_minor, e.currency) for e in expired] == [(15, "UNT")]
        assert gw.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan)).units_left == 0
    finally:
        gw.close()
