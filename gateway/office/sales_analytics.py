"""Sales analytics from the transactions database: per local day of a zone, and by
partner, outlet and product, for a set of card ranges (a program's, or one plain gift or
fleet range).

A sale is an approved purchase or completion (the card paid: what it was charged) or a
sale paid otherwise with a loyalty card (what the customer paid, after the discount).
Returns are approved refunds and reversals of sales (what they gave back). Litres come
from the sales' volumes; products from their lines (a line's own price; a sale without
lines counts under no product). Points earned count what returns took back, negatively.
"""
import collections
import dataclasses
import datetime

from cardgate.fastcore.records import APPROVED_RESULTS, Op
from cardgate.v1 import office_pb2

SALES = (Op.PURCHASE, Op.COMPLETE, Op.LOYALTY_SALE)


@dataclasses.dataclass
class Figures:
    sales_minor: int = 0
    returns_minor: int = 0
    transactions: int = 0
    cards: set = dataclasses.field(default_factory=set)
    volume_ml: int = 0
    points_earned: int = 0
    points_redeemed: int = 0


@dataclasses.dataclass
class Analytics:
    days: dict              # datetime.date -> Figures, every day of the period
    by_partner: dict        # partner id -> Figures
    by_outlet: dict         # "merchant/outlet" -> Figures
    by_product: dict        # product code (None: no lines) -> Figures
    total: Figures


def _sale_amount(tx) -> int:
    if tx.op == Op.LOYALTY_SALE:
        return tx.amount_minor - tx.discount_minor      # paid otherwise: what was paid
    return tx.approved_minor


def analyze(items, zone, from_s: int, until_s: int, priced) -> Analytics:
    """items: (records.Transaction, TransactionDetails) of [from_s, until_s) of the card
    ranges analyzed, oldest first. zone: a tzinfo; priced(line) -> a line's money."""
    first = datetime.datetime.fromtimestamp(from_s, zone).date()
    last = datetime.datetime.fromtimestamp(max(until_s - 1, from_s), zone).date()
    days = {first + datetime.timedelta(d): Figures() for d in range((last - first).days + 1)}
    partners, outlets = collections.defaultdict(Figures), collections.defaultdict(Figures)
    products, total = collections.defaultdict(Figures), Figures()
    for tx, details in items:
        if tx.result not in APPROVED_RESULTS:
            continue
        day = days[datetime.datetime.fromtimestamp(tx.time_s, zone).date()]
        outlet = f"{details.acceptor.merchant_id}/{details.acceptor.outlet_id}" \
            if details.acceptor.merchant_id else ""
        where = [day, total, partners[tx.partner_id], outlets[outlet]]
        for figures in where:
            figures.points_earned += tx.points_earned
            figures.points_redeemed += tx.points_redeemed
        if tx.op in SALES:
            amount = _sale_amount(tx)
            for figures in where:
                figures.sales_minor += amount
                figures.transactions += 1
                figures.cards.add(tx.card_id)
                figures.volume_ml += tx.volume_ml
            for line in details.lines or [None]:
                product = products[line.product_code if line is not None else None]
                product.sales_minor += priced(line) if line is not None else amount
                product.volume_ml += line.volume_ml if line is not None else tx.volume_ml
                product.transactions += 1
                product.cards.add(tx.card_id)
        elif tx.op == Op.REFUND or (tx.op == Op.REVERSAL and tx.ref_op in SALES):
            for figures in where:
                figures.returns_minor += tx.approved_minor
    partners.pop(0, None)               # outlets of no partner
    outlets.pop("", None)
    return Analytics(days, _moved(partners), _moved(outlets), dict(products), total)


def _moved(by: dict) -> dict:
    """Those that sold, took returns or moved points (a load is none of these)."""
    return {key: f for key, f in by.items()
            if f.transactions or f.returns_minor or f.points_earned or f.points_redeemed}


def _message(key: str, name: str, f: Figures) -> "office_pb2.SalesFigures":
    return office_pb2.SalesFigures(
        key=key, name=name, sales_minor=f.sales_minor, returns_minor=f.returns_minor,
        transactions=f.transactions, active_cards=len(f.cards), volume_ml=f.volume_ml,
        points_earned=f.points_earned, points_redeemed=f.points_redeemed)


def message_of(found: Analytics, currency: str, zone_name: str, partner_name,
               product_name) -> "office_pb2.SalesAnalytics":
    """The SalesAnalytics answer; partner_name, product_name: id -> name."""
    return office_pb2.SalesAnalytics(
        currency=currency, time_zone=zone_name,
        days=[_message(day.isoformat(), "", f) for day, f in found.days.items()],
        by_partner=[_message(str(p), partner_name(p), f) for p, f in sorted(found.by_partner.items())],
        by_outlet=[_message(o, "", f) for o, f in sorted(found.by_outlet.items())],
        by_product=[_message("" if code is None else str(code),
                             "" if code is None else product_name(code), f)
                    for code, f in sorted(found.by_product.items(), key=lambda i: (i[0] is None, i[0] or 0))],
        total=_message("total", "", found.total))
