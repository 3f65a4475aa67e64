"""Program analytics over a period, from the journal: active cards and transactions,
average check and purchase frequency, retention against the period before, points
earned, redeemed and expired, and breakage (expired / earned).

Every sale is in the journal: purchases and completions as money, sales paid otherwise
as their statistical entry (Slot.CARD_SALES_ELSEWHERE), so the journal alone answers."""
import collections

from cardgate.fastcore import records
from cardgate.fastcore.records import Op, Slot

from .journal_period import entries_between

Analytics = collections.namedtuple(
    "Analytics", "active_cards transactions sales_minor returns_minor average_check_minor "
    "purchases_per_card_x100 previous_active_cards retained_cards retention_bp points_earned "
    "points_redeemed points_expired points_returned breakage_bp")

_RETURN_OPS = (Op.REFUND, Op.REVERSAL)


class _Period:
    def __init__(self):
        self.cards = set()
        self.transactions = self.sales = self.returns = 0
        self.points = collections.Counter()


def _scan(store, txn, system_ranges, from_s, until_s, with_points=True) -> _Period:
    period = _Period()
    points = period.points
    for e in entries_between(store, txn, from_s, until_s):
        op = e.op
        if op in (Op.PURCHASE, Op.COMPLETE):
            if e.credit_slot == Slot.RANGE_MERCHANT and e.credit_owner in system_ranges:
                period.cards.add(e.debit_owner)
                period.transactions += 1
                period.sales += e.amount_minor
        elif op == Op.LOYALTY_SALE:
            if e.debit_owner in system_ranges:
                period.cards.add(e.credit_owner)
                period.transactions += 1
                period.sales += e.amount_minor
        elif op in _RETURN_OPS and e.currency != records.POINTS_ASSET:
            if (e.debit_slot == Slot.RANGE_MERCHANT and e.debit_owner in system_ranges) or \
                    (e.debit_slot == Slot.CARD_SALES_ELSEWHERE and e.credit_owner in system_ranges):
                period.returns += e.amount_minor
        elif with_points and e.currency == records.POINTS_ASSET:
            if op == Op.EARN_POINTS and e.debit_owner in system_ranges:
                points["earned"] += e.amount_minor
            elif op == Op.REDEEM_POINTS and e.credit_owner in system_ranges:
                points["redeemed"] += e.amount_minor
            elif op == Op.REVERSAL and e.debit_slot == Slot.RANGE_POINTS_REDEEMED and \
                    e.debit_owner in system_ranges:
                points["redeemed"] -= e.amount_minor
            elif op == Op.POINTS_EXPIRY and e.credit_owner in system_ranges:
                points["expired"] += e.amount_minor
            elif op in _RETURN_OPS and e.credit_slot == Slot.RANGE_POINTS_ISSUED and \
                    e.credit_owner in system_ranges:
                points["returned"] += e.amount_minor
    return period


def analyze(store, txn, program, from_s: int, until_s: int) -> Analytics:
    """The program's figures for [from_s, until_s); retention against the period of the
    same length just before."""
    system_ranges = {records.SYSTEM_OWNER_BASE + r for r in program.range_ids}
    now = _scan(store, txn, system_ranges, from_s, until_s)
    before = _scan(store, txn, system_ranges, 2 * from_s - until_s, from_s, with_points=False)
    active, retained = len(now.cards), len(now.cards & before.cards)
    earned, expired = now.points["earned"], now.points["expired"]
    return Analytics(
        active, now.transactions, now.sales, now.returns,
        now.sales // now.transactions if now.transactions else 0,
        now.transactions * 100 // active if active else 0,
        len(before.cards), retained, retained * 10_000 // len(before.cards) if before.cards else 0,
        earned, now.points["redeemed"], expired, now.points["returned"],
        expired * 10_000 // earned if earned else 0)
