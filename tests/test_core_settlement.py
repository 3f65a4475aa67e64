"""Coalition settlement stays exact when points come back: every lot given back (a
reversed sale paid with points, a released reservation, a transfer) keeps the partner
that issued its points, so that the next redemption pays the right issuer."""
import pytest

from cardgate.fastcore import records
from cardgate.fastcore.records import Op, Result
from cardgate.gateway.loyalty import settlement
from core_driver import KEYS, new_core

A, B, C = 1, 2, 3                       # partners; each has one outlet, code 100 + id
RATE = 1000                             # a point is worth one minor unit


@pytest.fixture
def core(tmp_path):
    c = new_core(tmp_path, currency="EUR")
    c.apply(c.rq(Op.SET_PROGRAM, payload=records.pack_program(
                1, records.ExpiryKind.NEVER, range_ids=[1], point_value_millis=RATE)),
            *[c.rq(Op.DEFINE_PARTNER, partner_id=p, partner_name=f"partner {p}") for p in (A, B, C)],
            *[c.rq(Op.DEFINE_OUTLET, outlet_code=100 + p,
                   payload=records.pack_outlet(100 + p, 0, f"outlet {p}", p)) for p in (A, B, C)])
    # Card 0 earns 100 points at A, then 100 at B: A's are spent first (both never expire,
    # A's lot is older).
    earned = c.apply(earn(c, A, 100), earn(c, B, 100))
    assert {r.result for r in earned} == {Result.APPROVED}
    yield c
    c.store.close()


def earn(core, partner, points, card=0):
    return core.rq(Op.EARN_POINTS, card, currency=records.POINTS_ASSET, amount_minor=points,
                   outlet_code=100 + partner)


def pay_with_points(core, partner, points, request_id=None, card=0):
    reply, = core.apply(core.rq(Op.LOYALTY_SALE, card, request_id=request_id, currency="EUR",
                                amount_minor=points * RATE // 1000 + 500, points_tendered=points,
                                payment_method=records.PaymentMethod.CASH,
                                outlet_code=100 + partner))
    assert reply.result == Result.APPROVED and reply.points_redeemed == points
    return reply


def flows(core):
    program, _ = core.store.read_program(1)
    with core.store.env.begin() as txn:
        result = settlement.settle(core.store, txn, program, 0, core.now_s + 1)
    return {(a, b): points for a, b, points, _ in result.transfers}


def lots_by_issuer(core, card=0):
    by_issuer = {}
    with core.store.env.begin() as txn:
        for lot_id, value in txn.cursor(db=core.store.db_point_lots):
            lot = records.unpack_lot(value)
            if lot.card_id == card + 1 and lot.status == records.LotState.OPEN:
                by_issuer[lot.partner_id] = by_issuer.get(lot.partner_id, 0) + lot.quantity_left
    return by_issuer


def test_a_reversed_mixed_issuer_redemption_gives_each_issuer_its_points_back(core):
    sale_id = core.new_id()
    pay_with_points(core, C, 150, sale_id)
    assert flows(core) == {(A, C): 100, (B, C): 50}
    reversal, = core.apply(core.rq(Op.REVERSAL, 0, ref_request_id=sale_id))
    assert reversal.result == Result.APPROVED
    assert flows(core) == {}
    assert lots_by_issuer(core) == {A: 100, B: 100}
    pay_with_points(core, C, 150)               # the same redemption again: the same flows
    assert flows(core) == {(A, C): 100, (B, C): 50}
    core.audit_clean()


def test_a_released_reservation_keeps_each_issuers_points(core):
    reserve_id = core.new_id()
    reserved, = core.apply(core.rq(Op.RESERVE_POINTS, 0, request_id=reserve_id,
                                   currency=records.POINTS_ASSET, amount_minor=150,
                                   outlet_code=100 + C))
    assert reserved.result == Result.APPROVED
    released, = core.apply(core.rq(Op.RELEASE_POINTS, 0, ref_request_id=reserve_id,
                                   currency=records.POINTS_ASSET))
    assert released.result == Result.APPROVED
    assert lots_by_issuer(core) == {A: 100, B: 100}
    pay_with_points(core, C, 200)
    assert flows(core) == {(A, C): 100, (B, C): 100}
    core.audit_clean()


def test_a_partly_confirmed_reservation_gives_back_the_rest_by_issuer(core):
    reserve_id = core.new_id()
    core.apply(core.rq(Op.RESERVE_POINTS, 0, request_id=reserve_id,
                       currency=records.POINTS_ASSET, amount_minor=160, outlet_code=100 + C))
    confirmed, = core.apply(core.rq(Op.CONFIRM_POINTS, 0, ref_request_id=reserve_id,
                                    currency=records.POINTS_ASSET, amount_minor=120))
    assert confirmed.result == Result.APPROVED
    assert flows(core) == {(A, C): 100, (B, C): 20}
    assert lots_by_issuer(core) == {B: 80}        # 40 given back: B's, beside B's 40 left
    pay_with_points(core, A, 80)
    assert flows(core) == {(A, C): 100, (B, C): 20, (B, A): 80}
    core.audit_clean()


def test_transferred_points_keep_their_issuers(core):
    transfer, = core.apply(core.rq(Op.TRANSFER_POINTS, 0, currency=records.POINTS_ASSET,
                                   amount_minor=150, payload=KEYS[1]))
    assert transfer.result == Result.APPROVED
    assert lots_by_issuer(core, card=1) == {A: 100, B: 50}
    pay_with_points(core, C, 150, card=1)
    assert flows(core) == {(A, C): 100, (B, C): 50}
    core.audit_clean()
