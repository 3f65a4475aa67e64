"""Small helpers shared by the gateway tests (card numbers, ranges, state snapshots)."""
import uuid
import zlib

import grpc
import pytest

from cardgate.fastcore import ledger, records
from cardgate.gateway.security.pan import luhn_check_digit
from cardgate.v1 import authorization_pb2, common_pb2, issuing_pb2

IIN = "627700"


def new_id() -> str:
    return str(uuid.uuid4())


def make_pan(serial: int, prefix: str = IIN, length: int = 16) -> str:
    body = prefix + str(serial).zfill(length - len(prefix) - 1)
    return body + str(luhn_check_digit(body))


def eur(amount_minor: int, currency: str = "EUR") -> common_pb2.Money:
    return common_pb2.Money(amount_minor=amount_minor, currency=currency)


def create_range(gw, range_id=1, prefix=IIN, currency="EUR", **more):
    r = gw.issuing.CreateCardRange(issuing_pb2.CreateCardRangeRequest(
        request_id=new_id(), range_id=range_id, iin_prefix=prefix, pan_length=16,
        currency=currency, name="Gift cards", **more))
    assert r.result_code == common_pb2.RESULT_CODE_APPROVED, r


def issue(gw, pans, range_id=1, expiry_yyyymm=209912):
    r = gw.issuing.IssueGiftCards(issuing_pb2.IssueGiftCardsRequest(
        request_id=new_id(), range_id=range_id,
        cards=[issuing_pb2.GiftCardToIssue(pan=p, expiry_yyyymm=expiry_yyyymm) for p in pans]))
    assert all(c.result_code == common_pb2.RESULT_CODE_APPROVED for c in r.cards), r
    return r


def funded_card(gw, serial, amount_minor=50_00):
    """A new card range with one gift card, loaded: the start of most stories."""
    pan = make_pan(serial)
    create_range(gw)
    issue(gw, [pan])
    load(gw, pan, amount_minor)
    return pan


def load(gw, pan, amount_minor, request_id=None, currency="EUR"):
    return gw.auth.LoadValue(authorization_pb2.LoadValueRequest(
        request_id=request_id or new_id(), pan=pan, amount=eur(amount_minor, currency))).authorization


def purchase(gw, pan, amount_minor, request_id=None, currency="EUR"):
    return gw.auth.Purchase(authorization_pb2.PurchaseRequest(
        request_id=request_id or new_id(), pan=pan, amount=eur(amount_minor, currency))).authorization


def refund(gw, pan, amount_minor, original_request_id, request_id=None):
    return gw.auth.Refund(authorization_pb2.RefundRequest(
        request_id=request_id or new_id(), pan=pan, amount=eur(amount_minor),
        original_request_id=original_request_id)).authorization


def reverse(gw, original_request_id, request_id=None):
    return gw.auth.Reverse(authorization_pb2.ReverseRequest(
        request_id=request_id or new_id(), original_request_id=original_request_id)).authorization


def balance(gw, pan):
    return gw.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan)).balance


def snapshot(store):
    """Everything a request could change: every record of every database."""
    with store.env.begin() as txn:
        return {name.decode(): list(txn.cursor(db=db)) for name, db in zip(ledger.DB_NAMES, store.dbs)}


def request_count(store):
    with store.env.begin() as txn:
        return txn.stat(store.db_requests)["entries"]


def journal_entries(store):
    with store.env.begin() as txn:
        return [records.unpack_journal_entry(v) for _, v in txn.cursor(db=store.db_journal)]


# What every answered request writes: its idempotency record and that record's entry in
# the retention index (by which it is forgotten once its window has passed); a card
# operation, its line in the transactions database too.
RECORDS_OF_A_REQUEST = ("requests", "retention", "transactions")


def beyond_request_records(snap, also=()):
    """A snapshot without the databases every answered request writes (and `also`)."""
    return {k: v for k, v in snap.items() if k not in RECORDS_OF_A_REQUEST + tuple(also)}


def declined_changing_nothing_but_its_record(store, call, result_code):
    """call() answers result_code, and writes nothing but its idempotency record (and,
    for an operator's or bureau's act, its admin log line)."""
    before = snapshot(store)
    answer = call()
    assert answer.result_code == result_code, answer
    after = snapshot(store)
    assert beyond_request_records(after, ("admin_log",)) == \
        beyond_request_records(before, ("admin_log",))
    assert len(after["requests"]) == len(before["requests"]) + 1
    assert len(after["retention"]) == len(before["retention"]) + 1
    assert len(after["admin_log"]) - len(before["admin_log"]) in (0, 1)
    return answer


def invalid_changing_nothing(store, call, field, code=grpc.StatusCode.INVALID_ARGUMENT, secret=None):
    """call() is refused with `code` naming `field` (never `secret`), and writes nothing."""
    before = snapshot(store)
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, caught.value.details()
    assert field in caught.value.details()
    assert secret is None or secret not in caught.value.details()
    assert snapshot(store) == before
    return caught.value


class CoreThatFailsOn:
    """fastcore's ledger, except that a batch holding `poison` raises after the core
    applied it (as a bug in the core would, half-way through its writes)."""

    def __init__(self, real, poison: bytes):
        self.real, self.poison, self.raised = real, poison, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def apply_batch(self, txn, dbs, packed, *args):
        replies = self.real.apply_batch(txn, dbs, packed, *args)
        if self.poison in packed:
            self.raised += 1
            raise RuntimeError("a bug in the core")
        return replies


def ink_of(png: bytes) -> float:
    """The share of bytes of a PNG's pixel rows that are not white."""
    data, at = b"", 8
    while at < len(png):
        size = int.from_bytes(png[at:at + 4], "big")
        if png[at + 4:at + 8] == b"IDAT":
            data += png[at + 8:at + 8 + size]
        at += 12 + size
    pixels = zlib.decompress(data)
    return sum(byte < 0xF0 for byte in pixels) / len(pixels)


class Clock:
    """A gateway's clock a test sets (clock.now_s), in Unix seconds."""

    def __init__(self, now_s):
        self.now_s = now_s

    def __call__(self):
        return self.now_s
