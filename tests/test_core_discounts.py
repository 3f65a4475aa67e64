"""A discount card's discount applies at every sale: paid with the card's own value (a
purchase, a completion: the card is charged the price less the discount) or otherwise
(RecordSale). Lifetime spend, which discount levels are reached by, counts the price,
or what was paid when the program says so; returns take back their share of both."""
import pytest

from cardgate.fastcore import records
from cardgate.fastcore.records import Op, Result
from core_driver import new_core


def setup(tmp_path, levels, **program):
    core = new_core(tmp_path, currency="EUR")
    core.apply(core.rq(Op.SET_PROGRAM, payload=records.pack_program(
                   1, records.ExpiryKind.NEVER, range_ids=[1],
                   discounts=[records.DiscountStep(*level) for level in levels], **program)),
               core.rq(Op.LOAD, 0, currency="EUR", amount_minor=10_000))
    return core


def lifetime_spend(core, card=0):
    return records.unpack_member(core.read("db_book", records.member_key(card + 1))) \
        .lifetime_spend_minor


def purchase(core, amount, card=0, **fields):
    return core.apply(core.rq(Op.PURCHASE, card, currency="EUR", amount_minor=amount,
                              **fields))[0]


@pytest.fixture
def core(tmp_path):
    c = setup(tmp_path, [(0, 500)])             # 5 % from the first sale
    yield c
    c.store.close()


def test_a_purchase_with_the_cards_value_is_charged_the_price_less_the_discount(core):
    paid = purchase(core, 2000)
    assert (paid.result, paid.approved_minor, paid.discount_bp, paid.discount_minor) == \
        (Result.APPROVED, 1900, 500, 100)
    assert paid.balance_minor == 8100
    assert lifetime_spend(core) == 2000           # the price, by default
    core.audit_clean()


def test_partial_approval_compares_with_the_discounted_price(core):
    purchase(core, 2000)                         # 8100 left
    fits = purchase(core, 8526)                  # 8526 - 426 = 8100: exactly what is left
    assert (fits.result, fits.approved_minor, fits.balance_minor) == (Result.APPROVED, 8100, 0)
    core.apply(core.rq(Op.LOAD, 0, currency="EUR", amount_minor=1000))
    partial = purchase(core, 2000, partial_ok=True)
    assert (partial.result, partial.approved_minor, partial.discount_minor) == \
        (Result.PARTIALLY_APPROVED, 1000, 100)
    core.audit_clean()


def test_a_completion_is_charged_what_was_dispensed_less_the_discount(core):
    hold_id = core.new_id()
    core.apply(core.rq(Op.PREAUTH, 0, request_id=hold_id, currency="EUR", amount_minor=5000))
    done, = core.apply(core.rq(Op.COMPLETE, 0, ref_request_id=hold_id, currency="EUR",
                               amount_minor=4000))
    assert (done.result, done.approved_minor, done.discount_minor, done.balance_minor) == \
        (Result.APPROVED, 3800, 200, 6200)
    core.audit_clean()


def test_a_refund_takes_back_its_share_of_the_price_from_lifetime_spend(core):
    sale_id = core.new_id()
    purchase(core, 2000, request_id=sale_id)
    refund, = core.apply(core.rq(Op.REFUND, 0, ref_request_id=sale_id, currency="EUR",
                                 amount_minor=950))
    assert refund.result == Result.APPROVED
    assert lifetime_spend(core) == 1000           # 950 paid and 50 of discount
    rest, = core.apply(core.rq(Op.REFUND, 0, ref_request_id=sale_id, currency="EUR",
                               amount_minor=950))
    assert rest.result == Result.APPROVED and lifetime_spend(core) == 0
    core.audit_clean()


def test_the_program_may_count_what_was_paid_instead(tmp_path):
    core = setup(tmp_path, [(0, 500)], spend_after_discount=True)
    purchase(core, 2000)
    assert lifetime_spend(core) == 1900
    sale, = core.apply(core.rq(Op.LOYALTY_SALE, 0, currency="EUR", amount_minor=1000,
                               payment_method=records.PaymentMethod.CASH))
    assert (sale.discount_minor, lifetime_spend(core)) == (50, 2850)
    core.store.close()


def test_the_level_a_sale_reaches_applies_from_the_next_sale(tmp_path):
    core = setup(tmp_path, [(3000, 300)])
    first = purchase(core, 3000)
    assert (first.approved_minor, first.discount_minor) == (3000, 0)
    second = purchase(core, 1000)
    assert (second.approved_minor, second.discount_minor) == (970, 30)
    core.store.close()


def test_a_full_discount_makes_a_purchase_free_and_reversible(tmp_path):
    core = setup(tmp_path, [(0, 10000)])
    sale_id = core.new_id()
    free = purchase(core, 2500, request_id=sale_id)
    assert (free.result, free.approved_minor, free.discount_minor, free.journal_seq) == \
        (Result.APPROVED, 0, 2500, 0)
    assert free.balance_minor == 10_000
    reversal, = core.apply(core.rq(Op.REVERSAL, 0, ref_request_id=sale_id))
    assert reversal.result == Result.APPROVED and lifetime_spend(core) == 0
    core.audit_clean()
    core.store.close()
