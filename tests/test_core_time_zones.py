"""Local time follows daylight saving: a program, a fleet profile or a card range naming
an IANA zone (compiled from tzdata by the gateway, read by the core from a table) gets
its days, hours and months right on both transition days, to the second. Europe/Warsaw
moves to summer time on 2026-03-29 at 01:00 UTC and back on 2026-10-25 at 01:00 UTC."""
import calendar
import datetime
import zoneinfo

import pytest

from cardgate.fastcore import records
from cardgate.fastcore.records import Op, Result
from cardgate.gateway import zones
from cardgate.gateway.store.store import Store
from core_driver import KEYS, Core

WARSAW = "Europe/Warsaw"


def utc(*fields):
    return calendar.timegm(fields + (0,) * (6 - len(fields)))


@pytest.fixture
def core(tmp_path):
    c = Core(Store(tmp_path, sync=False, map_size_bytes=64 << 20), now_s=utc(2026, 3, 1))
    yield c
    c.store.close()


def start(core, zone=WARSAW, **range_fields):
    """Range 1 in `zone`'s local time, its cards 0..3 issued and loaded."""
    zone_id = zones.zone_id(zone) if zone else 0
    replies = core.apply(
        *([zones.define_request(zone)] if zone else []),
        core.rq(Op.CREATE_RANGE, range_id=1, currency="PLN", iin_prefix=627700, iin_digits=6,
                pan_length=16, zone_id=zone_id, **range_fields),
        *[core.rq(Op.ISSUE_CARD, n, range_id=1, expiry_yyyymm=209912, pan_first6=627700,
                  pan_last4=1000 + n, pan_length=16) for n in range(len(KEYS))])
    assert {r.result for r in replies} == {Result.APPROVED}
    return zone_id


def at(core, when_s, *packed):
    core.now_s = when_s
    return core.apply(*packed)


def test_the_compiled_table_matches_zoneinfo_on_both_transitions():
    _, payload = zones.compiled(WARSAW)
    table = [zones.ENTRY.unpack_from(payload, offset)
             for offset in range(zones.ZONE_NAME_BYTES, len(payload), zones.ENTRY.size)]
    changes = {from_s: offset for from_s, offset, _ in table}
    assert changes[utc(2026, 3, 29, 1)] == 7200 and changes[utc(2026, 10, 25, 1)] == 3600
    zone = zoneinfo.ZoneInfo(WARSAW)
    for t in range(utc(2026, 1, 1), utc(2027, 1, 1), 3 * 3600 + 17):
        in_force = max((f, o) for f, o, _ in table if f <= t)[1]
        assert in_force == datetime.datetime.fromtimestamp(t, zone).utcoffset().total_seconds()


def test_a_06_to_22_fleet_window_on_both_transition_days(core):
    zone_id = start(core)
    core.apply(core.rq(Op.SET_PROFILE, profile_id=1, payload=records.pack_profile(
                   1, minute_from=6 * 60, minute_to=22 * 60, zone_id=zone_id)),
               core.rq(Op.ASSIGN_CARD, 0, profile_id=1),
               core.rq(Op.LOAD, 0, currency="PLN", amount_minor=100_000))

    def buy(when_s):
        return at(core, when_s, core.rq(Op.PURCHASE, 0, currency="PLN", amount_minor=100))[0].result

    ok, closed = Result.APPROVED, Result.DECLINED_TIME_NOT_ALLOWED
    # Spring: 06:00 local is 04:00 UTC (summer time); a fixed +01:00 would say 05:00.
    assert buy(utc(2026, 3, 29, 3, 59, 59)) == closed
    assert buy(utc(2026, 3, 29, 4)) == ok
    assert buy(utc(2026, 3, 29, 19, 59, 59)) == ok
    assert buy(utc(2026, 3, 29, 20)) == closed
    # Autumn: 06:00 local is 05:00 UTC again (winter time); a fixed +02:00 would say 04:00.
    assert buy(utc(2026, 10, 25, 4, 59, 59)) == closed
    assert buy(utc(2026, 10, 25, 5)) == ok
    assert buy(utc(2026, 10, 25, 20, 59, 59)) == ok
    assert buy(utc(2026, 10, 25, 21)) == closed
    core.audit_clean()


def program(core, zone_id, **fields):
    return core.rq(Op.SET_PROGRAM, payload=records.pack_program(
        1, fields.pop("expiry_kind", records.ExpiryKind.NEVER), range_ids=[1],
        zone_id=zone_id, **fields))


def test_a_birthday_bonus_on_the_local_birthday_around_both_transitions(core):
    zone_id = start(core)
    core.apply(program(core, zone_id, birthday_points=100),
               core.rq(Op.SET_MEMBER, 0, birthday_mmdd=329),
               core.rq(Op.SET_MEMBER, 1, birthday_mmdd=1026))

    def sale(card, when_s):
        return at(core, when_s, core.rq(Op.LOYALTY_SALE, card, currency="PLN", amount_minor=1000,
                                        payment_method=records.PaymentMethod.CASH))[0]

    # 23:30 local on 28 March (winter time) is not the birthday; 00:00 on the 29th is.
    assert sale(0, utc(2026, 3, 28, 22, 30)).points_earned == 0
    assert sale(0, utc(2026, 3, 28, 23)).points_earned == 100
    # 23:30 local on 25 October (winter time again): not yet; a fixed +02:00 would say so.
    assert sale(1, utc(2026, 10, 25, 22, 30)).points_earned == 0
    assert sale(1, utc(2026, 10, 25, 23)).points_earned == 100
    core.audit_clean()


def test_points_expire_at_the_local_month_end_when_earned_on_a_transition_day(core):
    zone_id = start(core)
    core.apply(program(core, zone_id, expiry_kind=records.ExpiryKind.MONTH_END_AFTER))
    ends = {}
    for when in (utc(2026, 3, 29, 12), utc(2026, 10, 25, 12)):
        earn_id = core.new_id()
        reply, = at(core, when, core.rq(Op.EARN_POINTS, 0, request_id=earn_id,
                                        currency=records.POINTS_ASSET, amount_minor=5))
        assert reply.result == Result.APPROVED
        ends[when] = records.unpack_lot(core.read("db_point_lots", earn_id)).valid_until_s
    # 31 March 23:59:59 in summer time; 31 October 23:59:59 in winter time.
    assert ends == {utc(2026, 3, 29, 12): utc(2026, 3, 31, 21, 59, 59),
                    utc(2026, 10, 25, 12): utc(2026, 10, 31, 22, 59, 59)}
    core.audit_clean()


def test_daily_loads_count_by_the_ranges_local_day(core):
    start(core, load_per_day_max_minor=1000)

    def load(when_s, amount):
        return at(core, when_s, core.rq(Op.LOAD, 0, currency="PLN", amount_minor=amount))[0].result

    assert load(utc(2026, 3, 28, 22, 30), 1000) == Result.APPROVED       # 23:30 on the 28th
    assert load(utc(2026, 3, 28, 22, 59, 59), 1) == Result.DECLINED_LOAD_LIMIT_EXCEEDED
    assert load(utc(2026, 3, 28, 23), 1000) == Result.APPROVED           # 00:00 on the 29th
    core.audit_clean()


def test_a_card_expires_at_the_end_of_its_month_in_the_ranges_zone(tmp_path):
    """December 2026 ends at 11:00 UTC on the 31st in Auckland (summer time, +13:00)."""
    for zone, still_valid in (("Pacific/Auckland", False), ("", True)):
        core = Core(Store(tmp_path / (zone.replace("/", "-") or "utc"), sync=False,
                          map_size_bytes=64 << 20), now_s=utc(2026, 12, 1))
        start(core, zone)
        core.apply(core.rq(Op.ISSUE_CARD, request_id=core.new_id(), card_key=b"\x09" * 32,
                           range_id=1, expiry_yyyymm=202612, pan_first6=627700,
                           pan_last4=1009, pan_length=16))
        core.apply(core.rq(Op.LOAD, card_key=b"\x09" * 32, currency="PLN", amount_minor=500))
        late, = at(core, utc(2026, 12, 31, 11), core.rq(
            Op.PURCHASE, card_key=b"\x09" * 32, currency="PLN", amount_minor=10))
        assert (late.result == Result.APPROVED) == still_valid, (zone, late.result)
        core.store.close()


def test_a_zone_never_defined_is_declined(core):
    start(core, zone="")
    reply, = core.apply(program(core, zones.zone_id("Europe/Lisbon")))
    assert reply.result == Result.DECLINED_UNKNOWN_ZONE
