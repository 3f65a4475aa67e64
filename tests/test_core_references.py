"""Requests that refer to earlier ones follow the card as it is now: a completion after
its hold expired is a forced capture within the range's grace window (the pump has
dispensed), reversals and completions of a closed or replaced card are declined, and the
audit accounts for every forced capture."""
import pytest

from cardgate.fastcore import records
from cardgate.fastcore.records import Op, Result
from core_driver import KEYS, new_core

CLOSE_PAYOUT = 1                          # cardgate.v1.CloseDisposition - 1

HOLD_S = records.HOLD_TIMEOUT_S_DEFAULT
GRACE_S = records.LATE_GRACE_S_DEFAULT


@pytest.fixture
def core(tmp_path):
    c = new_core(tmp_path, late_grace_s=GRACE_S)
    c.apply(c.rq(Op.LOAD, 0, currency="IDR", amount_minor=5000))
    yield c
    c.store.close()


def preauth(core, amount=5000, card=0):
    hold_id = core.new_id()
    reply, = core.apply(core.rq(Op.PREAUTH, card, request_id=hold_id, currency="IDR",
                                amount_minor=amount))
    assert reply.result == Result.APPROVED
    return hold_id


def complete(core, hold_id, amount, card=0):
    return core.apply(core.rq(Op.COMPLETE, card, ref_request_id=hold_id, currency="IDR",
                              amount_minor=amount))[0]


def journal_entry(core, seq):
    return records.unpack_journal_entry(core.read("db_journal", records.journal_key(seq)))


def test_a_late_completion_is_a_forced_capture_even_below_the_available_balance(core):
    hold_id = preauth(core)
    core.now_s += HOLD_S                      # the hold expires at expires_s itself
    core.apply()
    spent, = core.apply(core.rq(Op.PURCHASE, 0, currency="IDR", amount_minor=4000))
    assert spent.result == Result.APPROVED and spent.balance_minor == 1000
    core.now_s += 3600
    completion_rq = core.rq(Op.COMPLETE, 0, ref_request_id=hold_id, currency="IDR",
                            amount_minor=4200, volume_ml=3000)
    late, = core.apply(completion_rq)
    assert late.result == Result.APPROVED and late.approved_minor == 4200
    assert late.review & records.REVIEW_FLAG_FORCED_CAPTURE
    assert late.balance_minor == -3200           # below zero, by less than the hold's 5000
    entry = journal_entry(core, late.journal_seq)
    assert (entry.op, entry.reason, entry.amount_minor) == \
        (Op.COMPLETE, records.JOURNAL_REASON_FORCED_CAPTURE, 4200)
    hold = records.unpack_hold(core.read("db_holds", hold_id))
    assert (hold.status, hold.forced, hold.completed_minor) == (records.HoldState.COMPLETED,
                                                                True, 4200)
    assert core.apply(completion_rq)[0] == late                # a retry: the same answer
    assert complete(core, hold_id, 1).result == Result.DECLINED_HOLD_ALREADY_COMPLETED
    counts = core.audit_clean()
    assert counts["forced_captures_minor"] == 4200
    # listed for the operator beside soft-limit approvals
    assert core.read("db_reviews", records.unpack_request(completion_rq).request_id) is not None


def test_the_grace_window_ends_to_the_second(core):
    first, second = preauth(core, 1000), preauth(core, 1000)
    core.now_s += HOLD_S
    core.apply()
    core.now_s += GRACE_S                      # exactly at the end of the window: taken
    assert complete(core, first, 1000).result == Result.APPROVED
    core.now_s += 1                            # one second past it: declined
    assert complete(core, second, 1000).result == Result.DECLINED_HOLD_EXPIRED
    core.audit_clean()


def test_a_forced_capture_goes_no_lower_than_minus_the_pre_authorized_amount(core):
    """Two expired holds on a card since spent to 0: the first late completion takes it to
    -3000; the second would go below minus its own hold's amount and is declined."""
    first, second = preauth(core, 3000), preauth(core, 2000)
    core.now_s += HOLD_S
    core.apply()
    assert core.apply(core.rq(Op.PURCHASE, 0, currency="IDR",
                              amount_minor=5000))[0].result == Result.APPROVED
    assert complete(core, first, 3000).balance_minor == -3000
    assert complete(core, second, 1).result == Result.DECLINED_INSUFFICIENT_FUNDS
    core.audit_clean()


def test_a_range_without_grace_declines_late_completions(tmp_path):
    core = new_core(tmp_path)                   # late_grace_s 0: never
    core.apply(core.rq(Op.LOAD, 0, currency="IDR", amount_minor=5000))
    hold_id = preauth(core)
    core.now_s += HOLD_S + 1
    assert complete(core, hold_id, 100).result == Result.DECLINED_HOLD_EXPIRED
    core.store.close()


def test_a_zero_completion_of_an_expired_hold_is_declined_not_forced(core):
    hold_id = preauth(core)
    core.now_s += HOLD_S
    assert complete(core, hold_id, 0).result == Result.DECLINED_HOLD_EXPIRED


@pytest.mark.parametrize("how", ["payout", "replaced"])
def test_a_closed_or_replaced_card_takes_no_late_completion_and_no_reversal(core, how):
    purchase_id = core.new_id()
    core.apply(core.rq(Op.PURCHASE, 0, request_id=purchase_id, currency="IDR", amount_minor=1000))
    hold_id = preauth(core, 2000)
    core.now_s += HOLD_S
    core.apply()
    if how == "payout":
        closing = core.rq(Op.DEACTIVATE, 0, close_disposition=CLOSE_PAYOUT)
    else:
        closing = core.rq(Op.REPLACE_CARD, 0, payload=KEYS[1])
    assert core.apply(closing)[0].result == Result.APPROVED
    late = complete(core, hold_id, 1500)
    assert (late.result, late.balance_minor) == (Result.DECLINED_CARD_CLOSED, 0)
    reversal, = core.apply(core.rq(Op.REVERSAL, 0, ref_request_id=purchase_id))
    assert reversal.result == Result.DECLINED_CARD_CLOSED
    assert reversal.pan_last4 == 1000
    core.audit_clean()


def test_a_card_a_forced_capture_left_owing_is_not_closed_cleared_or_replaced(core):
    hold_id = preauth(core)
    core.now_s += HOLD_S
    core.apply()
    core.apply(core.rq(Op.PURCHASE, 0, currency="IDR", amount_minor=5000))
    assert complete(core, hold_id, 700).balance_minor == -700
    replies = core.apply(core.rq(Op.DEACTIVATE, 0, close_disposition=CLOSE_PAYOUT),
                         core.rq(Op.CLEAR, 0),
                         core.rq(Op.REPLACE_CARD, 0, payload=KEYS[1]))
    assert [r.result for r in replies] == [Result.DECLINED_INSUFFICIENT_FUNDS] * 3
    assert core.apply(core.rq(Op.LOAD, 0, currency="IDR", amount_minor=700))[0].balance_minor == 0
    assert core.apply(core.rq(Op.DEACTIVATE, 0))[0].result == Result.APPROVED
    core.audit_clean()


def test_the_original_after_its_blind_reversal_answers_the_card_as_it_is(core):
    load_id, earn_id = core.new_id(), core.new_id()
    core.apply(core.rq(Op.REVERSAL, request_id=core.new_id(), ref_request_id=load_id),
               core.rq(Op.REVERSAL, request_id=core.new_id(), ref_request_id=earn_id))
    load, earn = core.apply(
        core.rq(Op.LOAD, 0, request_id=load_id, currency="IDR", amount_minor=700),
        core.rq(Op.EARN_POINTS, 0, request_id=earn_id, currency=records.POINTS_ASSET,
                amount_minor=9))
    assert (load.result, load.pan_last4, load.currency, load.balance_minor) == \
        (Result.DECLINED_ALREADY_REVERSED, 1000, "IDR", 5000)
    assert (earn.result, earn.pan_last4, earn.currency, earn.balance_minor) == \
        (Result.DECLINED_ALREADY_REVERSED, 1000, records.POINTS_ASSET, 0)
    assert load.journal_seq == earn.journal_seq == 0
    core.audit_clean()
