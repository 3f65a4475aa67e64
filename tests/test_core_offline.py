"""Store and forward: a sale a terminal approved while it could not reach the host is
advised later (an ISO 8583 0220 without original data elements, or a Purchase with
`offline`). Within the range's offline floor and age limits the core posts it whatever
the card holds or has become (a forced post: flagged for review, the card may owe, the
audit allows and counts it); past them, or on a card closed since, it is declined,
recorded and flagged: never dropped. A repeat answers like the first."""
import calendar

import pytest

from cardgate.fastcore import records
from cardgate.fastcore.records import Op, Result
from core_driver import new_core

FLOOR = 5000
AGE_S = 2 * 86400
NOW = calendar.timegm((2026, 12, 7, 12, 0, 0))
OFFSET_MIN = 120                                  # the range's cards are used at UTC+2


@pytest.fixture
def core(tmp_path):
    c = new_core(tmp_path, offline_floor_minor=FLOOR, offline_age_s=AGE_S,
                 utc_offset_min=OFFSET_MIN)
    c.now_s = NOW
    c.apply(c.rq(Op.LOAD, 0, currency="IDR", amount_minor=1000))
    yield c
    c.store.close()


def local(utc_s):
    """What the terminal's clock showed at utc_s: its local wall clock."""
    return utc_s + OFFSET_MIN * 60


def advice(core, amount, approved_utc_s, card=0, **fields):
    return core.rq(Op.PURCHASE, card, currency="IDR", amount_minor=amount,
                   offline_local_s=local(approved_utc_s), offline_approval_code="Y1",
                   **fields)


def test_an_offline_sale_on_a_card_blocked_since_is_posted_flagged_and_owed(core):
    core.apply(core.rq(Op.SET_STATUS, 0, target_status=records.CardStatus.BLOCKED))
    rq = advice(core, 4000, NOW - 3600)
    posted, = core.apply(rq)
    assert posted.result == Result.APPROVED and posted.approved_minor == 4000
    assert posted.balance_minor == -3000                 # more than the card held
    assert posted.review == records.REVIEW_FLAG_OFFLINE_POSTED
    entry = records.unpack_journal_entry(core.read("db_journal",
                                                   records.journal_key(posted.journal_seq)))
    assert (entry.op, entry.reason, entry.amount_minor) == \
        (Op.PURCHASE, records.JOURNAL_REASON_OFFLINE_SALE, 4000)
    assert core.apply(rq)[0] == posted                    # the advice repeated: posted once
    request_id = records.unpack_request(rq).request_id
    assert core.read("db_reviews", request_id) is not None     # listed for the operator
    counts = core.audit_clean()
    assert counts["offline_sales_minor"] == 4000
    assert counts["owing_minor"] == {"IDR": 3000}
    # A plain purchase on the blocked card is still declined.
    declined, = core.apply(core.rq(Op.PURCHASE, 0, currency="IDR", amount_minor=1))
    assert declined.result == Result.DECLINED_CARD_BLOCKED


@pytest.mark.parametrize("amount, approved, result", [
    (FLOOR + 1, NOW - 60, Result.DECLINED_OFFLINE_FLOOR_EXCEEDED),
    (FLOOR, NOW - AGE_S - 1, Result.DECLINED_OFFLINE_TOO_OLD),
    (100, NOW + records.OFFLINE_AHEAD_S_MAX + 1, Result.DECLINED_OFFLINE_TOO_OLD),
])
def test_past_the_offline_limits_it_is_recorded_and_flagged_never_posted(core, amount,
                                                                         approved, result):
    rq = advice(core, amount, approved)
    refused, = core.apply(rq)
    assert refused.result == result and refused.approved_minor == 0
    assert refused.review == records.REVIEW_FLAG_OFFLINE_REFUSED
    assert refused.balance_minor == 1000
    assert core.read("db_reviews", records.unpack_request(rq).request_id) is not None
    assert core.apply(rq)[0] == refused                   # recorded: a repeat is answered alike
    assert core.audit_clean()["offline_sales_minor"] == 0


def test_the_limits_hold_to_the_unit_and_to_the_second_of_the_ranges_local_time(core):
    # At the floor, exactly as old as allowed, in the range's local time: posted. Were
    # the terminal's local clock taken for UTC, it would be two hours too old.
    at_limit, = core.apply(advice(core, FLOOR, NOW - AGE_S))
    assert at_limit.result == Result.APPROVED
    ahead, = core.apply(advice(core, 1, NOW + records.OFFLINE_AHEAD_S_MAX))
    assert ahead.result == Result.APPROVED
    core.audit_clean()


def test_a_range_that_names_no_floor_posts_no_offline_sale(tmp_path):
    core = new_core(tmp_path)
    core.now_s = NOW
    refused, = core.apply(core.rq(Op.PURCHASE, 0, currency="IDR", amount_minor=1,
                                  offline_local_s=local(NOW)))
    assert refused.result == Result.DECLINED_OFFLINE_FLOOR_EXCEEDED
    assert refused.review == records.REVIEW_FLAG_OFFLINE_REFUSED
    rng = records.unpack_range(core.read("db_config", records.range_key(1)))
    assert (rng.offline_floor_minor, rng.offline_age_s) == (0, records.OFFLINE_AGE_S_DEFAULT)
    core.store.close()


def test_a_card_closed_since_is_not_charged_the_advice_is_kept(core):
    core.apply(core.rq(Op.DEACTIVATE, 0, close_disposition=1))           # paid out
    refused, = core.apply(advice(core, 100, NOW - 60))
    assert refused.result == Result.DECLINED_CARD_CLOSED
    assert refused.review == records.REVIEW_FLAG_OFFLINE_REFUSED
    core.audit_clean()


def test_an_offline_sale_reversed_gives_the_card_its_value_back(core):
    rq = advice(core, 3000, NOW - 60)
    posted, = core.apply(rq)
    reversed_, = core.apply(core.rq(Op.REVERSAL,
                                    ref_request_id=records.unpack_request(rq).request_id))
    assert reversed_.result == Result.APPROVED and reversed_.balance_minor == 1000
    core.audit_clean()


def test_products_the_catalog_does_not_know_do_not_turn_an_advice_away(core):
    sale, = core.apply(advice(core, 500, NOW - 60, products=(7,)))
    assert sale.result == Result.APPROVED
    rejected, = core.apply(core.rq(Op.PURCHASE, 0, currency="IDR", amount_minor=500,
                                   products=(7,)))
    assert rejected.result == Result.REJECTED_UNKNOWN_PRODUCT
