"""Every credit and debit stops at the limit of the account it moves, and a request that
would cross one is declined alone: the rest of its batch goes through, nothing of it
stays, and the audit finds the books whole. Driven through the core directly, with
amounts at the edges the gRPC surface also accepts."""
from cardgate.fastcore import records
from cardgate.fastcore.records import Op, Result
from core_driver import KEYS, NOW_S

MAX = records.AMOUNT_MINOR_MAX                   # the most one request may move
CAP = records.BALANCE_MINOR_MAX                  # the most a card may hold


def program(core, **fields):
    return core.rq(Op.SET_PROGRAM, payload=records.pack_program(
        1, records.ExpiryKind.NEVER, range_ids=[1], **fields))


def test_points_at_the_cap_decline_alone_and_the_batch_goes_on(core):
    """The reproduced case: EarnPoints at the per-request maximum until the card is full,
    one more, and a 1-unit purchase of another card in the same batch."""
    core.apply(program(core), core.rq(Op.LOAD, 1, currency="IDR", amount_minor=100))
    earns = [core.rq(Op.EARN_POINTS, 0, currency=records.POINTS_ASSET, amount_minor=MAX)
             for _ in range(CAP // MAX + 1)]
    purchase = core.rq(Op.PURCHASE, 1, currency="IDR", amount_minor=1)
    replies = core.apply(*earns, purchase)
    assert [r.result for r in replies[:-2]] == [Result.APPROVED] * (CAP // MAX)
    crossed = replies[-2]
    assert crossed.result == Result.DECLINED_POINTS_LIMIT_EXCEEDED
    assert crossed.balance_minor == CAP and crossed.pan_last4 == 1000
    assert crossed.journal_seq == 0 and crossed.approval_code == 0
    assert replies[-1].result == Result.APPROVED and replies[-1].balance_minor == 99
    # the declined request is answered the same when retried, and the next batch is clean
    assert core.apply(earns[-1])[0] == crossed
    after = core.apply(core.rq(Op.PURCHASE, 1, currency="IDR", amount_minor=1),
                       core.rq(Op.EARN_POINTS, 0, currency=records.POINTS_ASSET, amount_minor=1))
    assert [r.result for r in after] == [Result.APPROVED, Result.DECLINED_POINTS_LIMIT_EXCEEDED]
    core.audit_clean()


def test_adjust_and_transfer_of_points_stop_at_the_receivers_cap(core):
    core.apply(program(core))
    fill = [core.rq(Op.EARN_POINTS, 0, currency=records.POINTS_ASSET, amount_minor=MAX)
            for _ in range(CAP // MAX)]
    core.apply(*fill, core.rq(Op.EARN_POINTS, 1, currency=records.POINTS_ASSET, amount_minor=5))
    adjust = core.rq(Op.ADJUST_POINTS, 0, currency=records.POINTS_ASSET, amount_minor=1)
    transfer = core.rq(Op.TRANSFER_POINTS, 1, currency=records.POINTS_ASSET, amount_minor=5,
                       payload=KEYS[0])
    replies = core.apply(adjust, transfer)
    assert [r.result for r in replies] == [Result.DECLINED_POINTS_LIMIT_EXCEEDED] * 2
    # the sender kept its points: the transfer's lot and its debit were undone with it
    assert replies[1].balance_minor == 5
    assert core.apply(core.rq(Op.TRANSFER_POINTS, 1, currency=records.POINTS_ASSET,
                              amount_minor=5, payload=KEYS[2]))[0].result == Result.APPROVED
    core.audit_clean()


def test_packages_stop_at_the_units_cap(core):
    sells = [core.rq(Op.SELL_PACKAGE, 0, currency=records.UNITS_ASSET, amount_minor=MAX,
                     valid_until_s=NOW_S + 86400) for _ in range(CAP // MAX + 1)]
    replies = core.apply(*sells)
    assert replies[-1].result == Result.DECLINED_UNITS_LIMIT_EXCEEDED
    assert replies[-1].balance_minor == CAP
    assert {r.result for r in replies[:-1]} == {Result.APPROVED}
    core.audit_clean()


def test_a_ranges_sales_pass_the_card_cap_without_stopping(core):
    """The merchant account of a range counts every sale of every card: past 10^15 minor
    units (about 630 M USD of sales in IDR) it goes on."""
    rounds = CAP // MAX + 2
    for _ in range(rounds):
        replies = core.apply(core.rq(Op.LOAD, 0, currency="IDR", amount_minor=MAX),
                             core.rq(Op.PURCHASE, 0, currency="IDR", amount_minor=MAX))
        assert [r.result for r in replies] == [Result.APPROVED] * 2
    with core.store.env.begin() as txn:
        merchant = records.unpack_account(txn.get(
            records.account_key(records.SYSTEM_OWNER_BASE + 1, records.Slot.RANGE_MERCHANT),
            db=core.store.db_book))
    assert merchant.balance_minor == rounds * MAX > CAP
    core.audit_clean()


def test_sales_paid_elsewhere_pass_the_card_cap_too(core):
    core.apply(program(core))
    sales = [core.rq(Op.LOYALTY_SALE, 0, currency="IDR", amount_minor=MAX,
                     payment_method=records.PaymentMethod.CASH) for _ in range(CAP // MAX + 2)]
    assert {r.result for r in core.apply(*sales)} == {Result.APPROVED}
    core.audit_clean()


def test_a_full_discount_makes_a_free_sale_not_a_failed_batch(core):
    """A 100 % discount level, which configuration accepts: the sale is approved for 0,
    and its reversal too."""
    core.apply(program(core, discounts=[records.DiscountStep(0, 10000)]))
    sale_id = core.new_id()
    sale, other = core.apply(
        core.rq(Op.LOYALTY_SALE, 0, request_id=sale_id, currency="IDR", amount_minor=5000,
                payment_method=records.PaymentMethod.CASH),
        core.rq(Op.LOAD, 1, currency="IDR", amount_minor=7))
    assert (sale.result, sale.discount_minor, sale.approved_minor) == (Result.APPROVED, 5000, 0)
    assert other.result == Result.APPROVED
    reversal, = core.apply(core.rq(Op.REVERSAL, 0, ref_request_id=sale_id))
    assert reversal.result == Result.APPROVED
    core.audit_clean()


def test_a_crossing_undoes_what_the_request_wrote_before_it(core):
    """A purchase whose points would pass the cap is declined after its value posting was
    already written: the card's value, the merchant, the journal and the member standing
    are as before, and the card can buy again once it has room."""
    core.apply(program(core, discounts=[records.DiscountStep(1, 100)]),
               core.rq(Op.LOAD, 0, currency="IDR", amount_minor=10_000),
               core.rq(Op.SET_RULES, program_id=1, payload=records.pack_rules(
                   [records.Rule(1, records.RuleKind.PER_AMOUNT, 1, 1)])),
               *[core.rq(Op.EARN_POINTS, 0, currency=records.POINTS_ASSET, amount_minor=MAX)
                 for _ in range(CAP // MAX)])
    with core.store.env.begin() as txn:
        journal_before = txn.stat(core.store.db_journal)["entries"]
    purchase, = core.apply(core.rq(Op.PURCHASE, 0, currency="IDR", amount_minor=700))
    assert purchase.result == Result.DECLINED_POINTS_LIMIT_EXCEEDED
    with core.store.env.begin() as txn:
        assert txn.stat(core.store.db_journal)["entries"] == journal_before
    balance, = core.apply(core.rq(Op.REDEEM_POINTS, 0, currency=records.POINTS_ASSET,
                                  amount_minor=MAX))
    assert balance.result == Result.APPROVED
    again, = core.apply(core.rq(Op.PURCHASE, 0, currency="IDR", amount_minor=700))
    assert (again.result, again.balance_minor, again.points_earned) == (Result.APPROVED, 9300, 700)
    core.audit_clean()
