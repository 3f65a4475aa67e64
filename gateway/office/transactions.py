"""Transactions as an office lists and exports them: every answered card operation, from
the core's transactions database (records.Transaction and the TransactionDetails a
terminal's request carried), filtered, paged by cursor, in the card range's local time.

The period bounds the work (the database is in time order); the filters are checked on
each line of it. One page is read in one read transaction; the next page starts after
the last line's key, so a listing resumed later neither repeats nor skips a line.
"""
import dataclasses
import datetime
import functools

from cardgate.fastcore import records
from cardgate.gateway import zones
from cardgate.gateway.fleet import sales as fleet
from cardgate.gateway.office.details import parse as parse_details
from cardgate.gateway.security.pan import mask_parts
from cardgate.gateway.validation import InvalidArgument
from cardgate.v1 import office_pb2

PAGE_SIZE_DEFAULT = 1000
PAGE_SIZE_MAX = 100_000
ROWS_UNBOUNDED = 2 ** 63        # Query.rows_max of a reader that takes the whole period
READ_ROWS = 500                 # lines read from the store in one read transaction
# TransactionResultFilter -> Filter.approved
RESULT_FILTERS = {office_pb2.TRANSACTION_RESULT_FILTER_UNSPECIFIED: None,
                  office_pb2.TRANSACTION_RESULT_FILTER_APPROVED: True,
                  office_pb2.TRANSACTION_RESULT_FILTER_DECLINED: False}
_NO_ID = bytes(records.REQUEST_ID_BYTES)


@dataclasses.dataclass(frozen=True)
class Filter:
    """What lines a listing keeps; None: any."""
    card_id: int = None
    contract_id: int = None
    merchant_code: int = None
    outlet_code: int = None
    partner_id: int = None
    range_id: int = None
    approved: bool = None

    def keeps(self, tx) -> bool:
        return ((self.card_id is None or tx.card_id == self.card_id) and
                (self.contract_id is None or tx.contract_id == self.contract_id) and
                (self.merchant_code is None or tx.merchant_code == self.merchant_code) and
                (self.outlet_code is None or tx.outlet_code == self.outlet_code) and
                (self.partner_id is None or tx.partner_id == self.partner_id) and
                (self.range_id is None or tx.range_id == self.range_id) and
                (self.approved is None or (tx.result in records.APPROVED_RESULTS) == self.approved))


@dataclasses.dataclass(frozen=True)
class Query:
    after: bytes            # a transaction key: lines after it
    until_s: int
    keep: Filter
    rows_max: int


def cursor_of(time_s: int, request_id: bytes) -> str:
    return records.transaction_key(time_s, request_id).hex()


def query_of(m, card_id_of, now_s: int) -> Query:
    """The Query of a ListTransactionsRequest; card_id_of: PAN -> the card's id, or None
    when the card is not known (then nothing matches)."""
    if m.from_s < 0 or m.until_s < 0:
        raise InvalidArgument("from_s", "times are Unix seconds, never negative")
    until_s = m.until_s or now_s + 1
    if until_s <= m.from_s:
        raise InvalidArgument("until_s", f"must be after from_s ({m.from_s}), got {until_s}")
    if m.page_size > PAGE_SIZE_MAX:
        raise InvalidArgument("page_size", f"must be at most {PAGE_SIZE_MAX}, got {m.page_size}")
    after = records.transaction_key(m.from_s)
    if m.page_token:
        try:
            after = bytes.fromhex(m.page_token)
        except ValueError:
            after = b""
        if len(after) != records.TRANSACTION_KEY_SIZE:
            raise InvalidArgument("page_token", "is not a cursor of ListTransactions")
    if m.outlet_id and not m.merchant_id:
        raise InvalidArgument("outlet_id", "needs its merchant_id")
    if m.result not in RESULT_FILTERS:
        raise InvalidArgument("result", f"is not a TransactionResultFilter: {m.result}")
    card_id = None
    if m.pan:
        card_id = card_id_of(m.pan)
        if card_id is None:
            card_id = 0         # a card never issued here: no line is its
    keep = Filter(
        card_id=card_id, contract_id=m.contract_id or None,
        merchant_code=fleet.merchant_code(m.merchant_id) if m.merchant_id and not m.outlet_id else None,
        outlet_code=fleet.outlet_code(m.merchant_id, m.outlet_id) if m.outlet_id else None,
        partner_id=m.partner_id or None, range_id=m.range_id or None,
        approved=RESULT_FILTERS[m.result])
    return Query(after, until_s, keep, m.page_size or PAGE_SIZE_DEFAULT)


def lines(store, query: Query):
    """Every records.Transaction the query keeps, oldest first, up to its rows_max."""
    after, given = query.after, 0
    while after is not None and given < query.rows_max:
        rows, after = store.read_transactions(after, query.until_s, READ_ROWS)
        for tx in rows:
            if query.keep.keeps(tx):
                yield tx
                given += 1
                if given == query.rows_max:
                    return


def of_period(store, from_s: int, until_s: int, keep: Filter = Filter()):
    """Every records.Transaction of [from_s, until_s) the filter keeps, oldest first."""
    return lines(store, Query(records.transaction_key(from_s), until_s, keep, ROWS_UNBOUNDED))


def zone_of(store, zone_id: int, utc_offset_min: int):
    """The tzinfo of a range's or program's local time: its zone, or its fixed offset."""
    name = store.read_zone_name(zone_id) if zone_id else ""
    if name:
        return zones.load(name)
    return datetime.timezone(datetime.timedelta(minutes=utc_offset_min))


class LocalTime:
    """A card range's local time, as its range record says (a zone, or a fixed offset);
    ranges are read once per listing."""

    def __init__(self, store):
        self.store = store
        self.zone_of = functools.lru_cache(maxsize=256)(self._zone)

    def _zone(self, range_id: int):
        found = self.store.read_range(range_id) if range_id else None
        if found is None:
            return datetime.timezone.utc
        return zone_of(self.store, found.zone_id, found.utc_offset_min)

    def text(self, time_s: int, range_id: int) -> str:
        return datetime.datetime.fromtimestamp(time_s, self.zone_of(range_id)).isoformat()


def _id_text(request_id: bytes) -> str:
    """A request id as its UUID's text ("" for none), without a uuid.UUID per line."""
    if request_id == _NO_ID:
        return ""
    h = request_id.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_OP_NAMES = {int(op): op.name for op in records.Op}


def _op_name(op: int) -> str:
    return _OP_NAMES.get(op) or str(op)


def masked_pan_of(tx, details) -> str:
    """A transaction's card, masked: from the card record, else as the terminal's details
    said (a card the host did not know)."""
    return mask_parts(tx.pan_first6, tx.pan_last4, tx.pan_length) or details.masked_pan


def line_of(tx, local: LocalTime, actor_names: dict, details=None) -> "office_pb2.TransactionLine":
    """The TransactionLine of a records.Transaction (details: its TransactionDetails, if
    parsed already)."""
    details = details if details is not None else parse_details(tx.details)
    acceptor = details.acceptor
    line = office_pb2.TransactionLine(
        time_s=tx.time_s, local_time=local.text(tx.time_s, tx.range_id),
        request_id=_id_text(tx.request_id), operation=_op_name(tx.op), result_code=tx.result,
        approval_code=f"{tx.approval_code:06d}" if tx.approval_code else "",
        masked_pan=masked_pan_of(tx, details),
        range_id=tx.range_id, contract_id=tx.contract_id, acceptor=acceptor,
        partner_id=tx.partner_id, volume_ml=tx.volume_ml, driver_id=details.fleet.driver_id,
        vehicle_id=details.fleet.vehicle_id, lines=details.lines,
        product_codes=details.product_codes, points_earned=tx.points_earned,
        points_redeemed=tx.points_redeemed, discount_minor=tx.discount_minor,
        journal_seq=tx.journal_seq, ref_request_id=_id_text(tx.ref_request_id),
        offline=tx.offline, flagged_for_review=bool(tx.review),
        actor=actor_names.get(tx.actor, f"actor {tx.actor}") if tx.actor else "",
        cursor=cursor_of(tx.time_s, tx.request_id))
    for field, amount in (("amount", tx.amount_minor), ("approved", tx.approved_minor),
                          ("balance", tx.balance_minor)):
        money = getattr(line, field)        # (set in place: cheaper than a Money each)
        money.amount_minor, money.currency = amount, tx.currency
    if tx.odometer is not None:
        line.odometer_km = tx.odometer
    return line
