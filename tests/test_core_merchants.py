"""The core between merchants: a request that names an earlier one (reversal, refund,
void, completion, a points reservation's confirmation or release, a retry) acts only on
its own merchant's, and a refusal carries nothing of the original; PIN policies; the
admin log of operators' acts. Driven directly, as the writer drives the core."""
import pytest

from cardgate.fastcore import records
from cardgate.fastcore.records import Op, Result

from core_driver import KEYS, new_core
from helpers import beyond_request_records, journal_entries, snapshot

A, B = 0x0A0A0A0A, 0x0B0B0B0B           # two merchants' codes
OPERATOR = 0                            # a request made for no merchant
PIN = b"\x11" * 16
OTHER_PIN = b"\x22" * 16


def funded(core, card=0, amount=100_00):
    reply, = core.apply(core.rq(Op.LOAD, card, amount_minor=amount, currency="IDR",
                                merchant_code=A))
    assert reply.result == Result.APPROVED
    return reply


def made_by(core, op, merchant, amount, outlet=0):
    """The id of a purchase or pre-authorization on card 0, made for merchant."""
    request_id = core.new_id()
    core.apply(core.rq(op, 0, request_id=request_id, amount_minor=amount, currency="IDR",
                       merchant_code=merchant, outlet_code=outlet))
    return request_id


def card_value(core, card=0):
    return core.store.read_card(KEYS[card])[1]


def assert_tells_nothing(reply):
    """A refusal of another merchant's request: no card, amount or balance in it."""
    assert reply.result == Result.DECLINED_NOT_OWN_REQUEST
    assert (reply.card_id, reply.pan_first6, reply.pan_last4, reply.pan_length) == (0, 0, 0, 0)
    assert (reply.balance_minor, reply.pending_minor, reply.approved_minor) == (0, 0, 0)
    assert reply.currency == "" and reply.points_balance == 0


def refused_changing_nothing(core, packed):
    """The request is declined NOT_OWN_REQUEST and writes nothing but its own record."""
    before = snapshot(core.store)
    reply, = core.apply(packed)
    assert_tells_nothing(reply)
    after = snapshot(core.store)
    assert beyond_request_records(after, ("admin_log",)) == \
        beyond_request_records(before, ("admin_log",))
    assert len(after["requests"]) == len(before["requests"]) + 1
    return reply


def test_another_merchant_cannot_reverse_refund_void_or_complete(core):
    funded(core)
    sale = made_by(core, Op.PURCHASE, A, 30_00)
    hold = made_by(core, Op.PREAUTH, A, 20_00)
    refused_changing_nothing(core, core.rq(Op.REVERSAL, ref_request_id=sale, merchant_code=B))
    refused_changing_nothing(core, core.rq(Op.REFUND, 0, ref_request_id=sale, amount_minor=10_00,
                                           currency="IDR", merchant_code=B))
    refused_changing_nothing(core, core.rq(Op.VOID, ref_request_id=hold, merchant_code=B))
    refused_changing_nothing(core, core.rq(Op.COMPLETE, 0, ref_request_id=hold,
                                           amount_minor=5_00, currency="IDR", merchant_code=B))
    refused_changing_nothing(core, core.rq(Op.REVERSAL, ref_request_id=hold, merchant_code=B))
    assert (card_value(core).balance_minor, card_value(core).pending_minor) == (70_00, 20_00)
    # The merchant's own requests still act on them.
    done, = core.apply(core.rq(Op.COMPLETE, 0, ref_request_id=hold, amount_minor=5_00,
                               currency="IDR", merchant_code=A))
    undone, = core.apply(core.rq(Op.REVERSAL, ref_request_id=sale, merchant_code=A))
    assert (done.result, undone.result) == (Result.APPROVED, Result.APPROVED)
    assert card_value(core).balance_minor == 95_00
    core.audit_clean()


def test_an_operator_acts_on_any_merchants_requests_and_is_named(core):
    funded(core)
    sale = made_by(core, Op.PURCHASE, A, 30_00)
    reversal = core.new_id()
    reply, = core.apply(core.rq(Op.REVERSAL, request_id=reversal, ref_request_id=sale,
                                merchant_code=OPERATOR, actor=0xC0FFEE))
    assert reply.result == Result.APPROVED and card_value(core).balance_minor == 100_00
    entries = [e for e in journal_entries(core.store) if e.request_id == reversal]
    assert entries and all(e.actor == 0xC0FFEE for e in entries)
    logged = core.store.read_admin_log()
    assert [(line.request_id, line.actor, line.op, line.result, line.card_id)
            for line in logged] == [(reversal, 0xC0FFEE, Op.REVERSAL, Result.APPROVED,
                                     reply.card_id)]


def test_a_retry_by_another_merchant_gets_no_stored_answer(core):
    load_id = core.new_id()
    first, = core.apply(core.rq(Op.LOAD, 0, request_id=load_id, amount_minor=10_00,
                                currency="IDR", merchant_code=A))
    assert first.result == Result.APPROVED
    replay, = core.apply(core.rq(Op.LOAD, 0, request_id=load_id, amount_minor=10_00,
                                 currency="IDR", merchant_code=B))
    assert replay.result == Result.REJECTED_REQUEST_ID_REUSED
    assert (replay.card_id, replay.balance_minor, replay.approval_code) == (0, 0, 0)
    again, = core.apply(core.rq(Op.LOAD, 0, request_id=load_id, amount_minor=10_00,
                                currency="IDR", merchant_code=A))
    assert again == first          # the merchant's own retry still gets its answer


def test_reversing_an_operators_adjustment_tells_a_terminal_nothing(core):
    funded(core)
    adjustment = core.new_id()
    core.apply(core.rq(Op.ADJUST, 0, request_id=adjustment, amount_minor=5_00, currency="IDR",
                       reason=1, actor=7))
    refused_changing_nothing(core, core.rq(Op.REVERSAL, ref_request_id=adjustment,
                                           merchant_code=B))


def test_a_blind_reversal_by_another_merchant_does_not_cancel_a_request(core):
    funded(core)
    late = core.new_id()
    blind, = core.apply(core.rq(Op.REVERSAL, ref_request_id=late, merchant_code=B))
    assert blind.result == Result.APPROVED and blind.card_id == 0
    sale, = core.apply(core.rq(Op.PURCHASE, 0, request_id=late, amount_minor=30_00,
                               currency="IDR", merchant_code=A))
    assert sale.result == Result.APPROVED and card_value(core).balance_minor == 70_00
    # The merchant's own blind reversal still cancels its late original.
    own = core.new_id()
    core.apply(core.rq(Op.REVERSAL, ref_request_id=own, merchant_code=A))
    cancelled, = core.apply(core.rq(Op.PURCHASE, 0, request_id=own, amount_minor=30_00,
                                    currency="IDR", merchant_code=A))
    assert cancelled.result == Result.DECLINED_ALREADY_REVERSED
    core.audit_clean()


def test_another_merchant_cannot_confirm_or_release_a_points_reservation(core):
    core.apply(core.rq(Op.EARN_POINTS, 0, amount_minor=500, currency="PTS", merchant_code=A))
    reservation = core.new_id()
    held, = core.apply(core.rq(Op.RESERVE_POINTS, 0, request_id=reservation, amount_minor=200,
                               currency="PTS", merchant_code=A))
    assert held.result == Result.APPROVED
    refused_changing_nothing(core, core.rq(Op.CONFIRM_POINTS, 0, ref_request_id=reservation,
                                           amount_minor=200, currency="PTS", merchant_code=B))
    refused_changing_nothing(core, core.rq(Op.RELEASE_POINTS, 0, ref_request_id=reservation,
                                           currency="PTS", merchant_code=B))
    confirmed, = core.apply(core.rq(Op.CONFIRM_POINTS, 0, ref_request_id=reservation,
                                    amount_minor=200, currency="PTS", merchant_code=A))
    assert confirmed.result == Result.APPROVED


# ---- PIN policy --------------------------------------------------------------------

def pin_core(tmp_path, range_policy, profile_policy=None):
    core = new_core(tmp_path, pin_policy=range_policy)
    core.apply(core.rq(Op.SET_PIN, 0, pin_verifier=PIN))
    funded(core)
    if profile_policy is not None:
        payload = records.pack_profile(9, pin_policy=profile_policy)
        core.apply(core.rq(Op.SET_PROFILE, profile_id=9, payload=payload),
                   core.rq(Op.ASSIGN_CARD, 0, profile_id=9))
    return core


def charge(core, pin=None, op=Op.PURCHASE):
    reply, = core.apply(core.rq(op, 0, amount_minor=1_00, currency="IDR", pin_verifier=pin))
    return reply.result


@pytest.mark.parametrize("op", [Op.PURCHASE, Op.PREAUTH])
@pytest.mark.parametrize("range_policy,profile_policy,without,wrong", [
    (0, None, Result.DECLINED_PIN_REQUIRED, Result.DECLINED_WRONG_PIN),       # default: required
    (records.PinPolicy.REQUIRED, None, Result.DECLINED_PIN_REQUIRED, Result.DECLINED_WRONG_PIN),
    (records.PinPolicy.OPTIONAL, None, Result.APPROVED, Result.DECLINED_WRONG_PIN),
    (records.PinPolicy.NOT_USED, None, Result.APPROVED, Result.APPROVED),
    # A restriction profile's policy, where it says one, is the one its cards follow.
    (records.PinPolicy.REQUIRED, records.PinPolicy.NOT_USED, Result.APPROVED, Result.APPROVED),
    (records.PinPolicy.REQUIRED, records.PinPolicy.OPTIONAL, Result.APPROVED,
     Result.DECLINED_WRONG_PIN),
    (records.PinPolicy.NOT_USED, 0, Result.APPROVED, Result.APPROVED),
])
def test_pin_policy(tmp_path, op, range_policy, profile_policy, without, wrong):
    core = pin_core(tmp_path, range_policy, profile_policy)
    try:
        assert charge(core, None, op) == without
        assert charge(core, OTHER_PIN, op) == wrong
        assert charge(core, PIN, op) == Result.APPROVED
        core.audit_clean()
    finally:
        core.store.close()


def test_a_profile_that_requires_a_pin_asks_it_as_a_prompt(tmp_path):
    core = pin_core(tmp_path, records.PinPolicy.NOT_USED, records.PinPolicy.REQUIRED)
    try:
        reply, = core.apply(core.rq(Op.PURCHASE, 0, amount_minor=1_00, currency="IDR"))
        assert reply.result == Result.DECLINED_PROMPT_REQUIRED
        assert reply.prompts_missing == records.Prompt.PIN
    finally:
        core.store.close()


def test_a_card_without_a_pin_is_not_asked_for_one(core):
    funded(core, 1)
    reply, = core.apply(core.rq(Op.PURCHASE, 1, amount_minor=1_00, currency="IDR"))
    assert reply.result == Result.APPROVED


def test_a_pin_policy_out_of_range_is_invalid(core):
    reply, = core.apply(core.rq(Op.CREATE_RANGE, range_id=2, currency="IDR", iin_prefix=627701,
                                iin_digits=6, pan_length=16, pin_policy=4))
    assert reply.result == Result.REJECTED_INVALID_REQUEST


def test_points_move_at_a_terminal_only_with_the_giving_cards_pin(core):
    core.apply(core.rq(Op.EARN_POINTS, 0, amount_minor=500, currency="PTS"),
               core.rq(Op.EARN_POINTS, 1, amount_minor=500, currency="PTS"),
               core.rq(Op.SET_PIN, 0, pin_verifier=PIN))

    def transfer(card, pin, merchant):
        reply, = core.apply(core.rq(Op.TRANSFER_POINTS, card, payload=KEYS[2], amount_minor=100,
                                    currency="PTS", pin_verifier=pin, merchant_code=merchant))
        return reply.result

    assert transfer(0, None, A) == Result.DECLINED_PIN_REQUIRED       # no PIN given
    assert transfer(1, None, A) == Result.DECLINED_PIN_REQUIRED       # the card has none
    assert transfer(1, PIN, A) == Result.DECLINED_PIN_REQUIRED
    assert transfer(0, OTHER_PIN, A) == Result.DECLINED_WRONG_PIN
    assert transfer(0, PIN, A) == Result.APPROVED                     # the cardholder's act
    assert transfer(1, None, OPERATOR) == Result.APPROVED             # an operator's
    assert core.store.read_points(core.store.read_card(KEYS[2])[0].card_id) == 200
    core.audit_clean()


@pytest.mark.parametrize("shares", [False, True])
def test_a_partner_may_let_its_outlets_act_on_each_others_requests(core, shares):
    """Two outlets of one coalition partner under two merchant ids: by default each acts
    only on its own merchant's requests; the partner may let them share (off by default)."""
    core.apply(core.rq(Op.DEFINE_PARTNER, partner_id=5, partner_name="fuelco",
                       partner_shares=shares),
               core.rq(Op.DEFINE_PARTNER, partner_id=6, partner_name="cafe", partner_shares=True),
               *[core.rq(Op.DEFINE_OUTLET, outlet_code=code,
                         payload=records.pack_outlet(code, 0, f"outlet {code}", partner))
                 for code, partner in ((501, 5), (502, 5), (601, 6))])
    funded(core)
    sale = made_by(core, Op.PURCHASE, A, 10_00, outlet=501)
    hold = made_by(core, Op.PREAUTH, A, 10_00, outlet=501)
    # Another partner's outlet never may, sharing or not.
    refused_changing_nothing(core, core.rq(Op.VOID, ref_request_id=hold, merchant_code=B,
                                           outlet_code=601))
    reversal, = core.apply(core.rq(Op.REVERSAL, ref_request_id=sale, merchant_code=B,
                                   outlet_code=502))
    void, = core.apply(core.rq(Op.VOID, ref_request_id=hold, merchant_code=B, outlet_code=502))
    wanted = Result.APPROVED if shares else Result.DECLINED_NOT_OWN_REQUEST
    assert (reversal.result, void.result) == (wanted, wanted)
    assert (card_value(core).balance_minor, card_value(core).pending_minor) == \
        ((100_00, 0) if shares else (90_00, 10_00))
    core.audit_clean()
