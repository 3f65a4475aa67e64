"""A fleet contract's invoice for a period, from its cards' transactions: what was charged
(purchases, completions, offline sales, less those reversed) and refunded, in total and
by card, vehicle, driver and product (litres and money).

Charges count what the card paid (after any discount); the products count the lines'
own prices, so their sum less the discount is the charge when every sale has lines. A
reversal takes its sale out wholly, wherever the sale falls: a sale of the period
reversed within it is not on the invoice at all, and one of an earlier period reversed in
this one is given back like a refund. Pre-authorizations and voids move no money to the
merchant and are not on it.
"""
import collections
import dataclasses

from cardgate.fastcore.records import APPROVED_RESULTS, Op
from cardgate.gateway.fleet.sales import priced
from cardgate.gateway.office.transactions import masked_pan_of
from cardgate.v1 import office_pb2

CHARGES = (Op.PURCHASE, Op.COMPLETE)


@dataclasses.dataclass
class Total:
    sales: int = 0
    volume_ml: int = 0
    amount_minor: int = 0

    def add(self, volume_ml: int, amount_minor: int, sales: int = 1):
        self.sales += sales
        self.volume_ml += volume_ml
        self.amount_minor += amount_minor


@dataclasses.dataclass
class Invoice:
    currency: str = ""
    charged_minor: int = 0
    refunded_minor: int = 0
    volume_ml: int = 0
    discount_minor: int = 0
    by_card: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(Total))
    by_vehicle: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(Total))
    by_driver: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(Total))
    by_product: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(Total))
    counted: list = dataclasses.field(default_factory=list)   # (Transaction, details) of it

    @property
    def total_minor(self) -> int:
        return self.charged_minor - self.refunded_minor


def invoice_of(items, original_of) -> Invoice:
    """The Invoice of a contract's transactions of a period, oldest first: items are
    (records.Transaction, TransactionDetails); original_of(request id) -> the
    records.RequestRecordView of an earlier request a reversal names, or None (forgotten
    past the requests' retention window: then nothing is given back for it)."""
    items = [(tx, d) for tx, d in items if tx.result in APPROVED_RESULTS]
    reversed_ids = {tx.ref_request_id for tx, _ in items if tx.op == Op.REVERSAL}
    invoice = Invoice()
    sales_of_period = set()
    for tx, details in items:
        invoice.currency = invoice.currency or tx.currency
        if tx.op in CHARGES or tx.op == Op.REFUND:
            sales_of_period.add(tx.request_id)
        if tx.request_id in reversed_ids:
            continue                    # reversed within the period: as if never made
        if tx.op in CHARGES:
            _charge(invoice, tx, details)
            invoice.counted.append((tx, details))
        elif tx.op == Op.REFUND:
            invoice.refunded_minor += tx.approved_minor
            invoice.by_card[masked_pan_of(tx, details)].add(0, -tx.approved_minor, 0)
            invoice.counted.append((tx, details))
    for tx, details in items:
        if tx.op == Op.REVERSAL and tx.ref_request_id not in sales_of_period:
            found = original_of(tx.ref_request_id)
            if found is not None and found.request.op in CHARGES and \
                    found.reply.result in APPROVED_RESULTS:
                # a sale of an earlier period, taken back in this one: given back here
                invoice.refunded_minor += found.reply.approved_minor
                invoice.by_card[masked_pan_of(tx, details)].add(0, -found.reply.approved_minor, 0)
                invoice.counted.append((tx, details))
    return invoice


def _charge(invoice: Invoice, tx, details):
    invoice.charged_minor += tx.approved_minor
    invoice.volume_ml += tx.volume_ml
    invoice.discount_minor += tx.discount_minor
    for by, key in ((invoice.by_card, masked_pan_of(tx, details)),
                    (invoice.by_vehicle, details.fleet.vehicle_id),
                    (invoice.by_driver, details.fleet.driver_id)):
        by[key].add(tx.volume_ml, tx.approved_minor)
    if not details.lines:
        invoice.by_product[None].add(tx.volume_ml, tx.approved_minor + tx.discount_minor)
    for line in details.lines:
        invoice.by_product[line.product_code].add(line.volume_ml, line_amount(line))


def line_amount(line) -> int:
    """A ProductLine's money: its amount, or its volume at its unit price."""
    return line.amount_minor or priced(line.volume_ml, line.unit_price_minor)


def _totals(by: dict, name_of=lambda key: "") -> list:
    return [office_pb2.InvoiceTotal(key="" if key is None else str(key), name=name_of(key),
                                    sales=t.sales, volume_ml=t.volume_ml, amount_minor=t.amount_minor)
            for key, t in sorted(by.items(), key=lambda item: (item[0] is None, str(item[0])))]


def message_of(invoice: Invoice, m, local, line_of, product_name) -> "office_pb2.FleetInvoice":
    """The FleetInvoice answering GetFleetInvoiceRequest m; local: the LocalTime of the
    contract's cards' range; line_of: (Transaction, details) -> its TransactionLine;
    product_name: code -> name."""
    range_id = invoice.counted[0][0].range_id if invoice.counted else 0
    return office_pb2.FleetInvoice(
        contract_id=m.contract_id, currency=invoice.currency, from_s=m.from_s, until_s=m.until_s,
        local_from=local.text(m.from_s, range_id), local_until=local.text(m.until_s, range_id),
        charged_minor=invoice.charged_minor, refunded_minor=invoice.refunded_minor,
        total_minor=invoice.total_minor, volume_ml=invoice.volume_ml,
        discount_minor=invoice.discount_minor, by_card=_totals(invoice.by_card),
        by_vehicle=_totals(invoice.by_vehicle), by_driver=_totals(invoice.by_driver),
        by_product=_totals(invoice.by_product,
                           lambda code: "" if code is None else product_name(code)),
        lines=[line_of(tx, details) for tx, details in invoice.counted])
