"""A core driven directly, as the writer drives it: batches of packed requests in one
write transaction each, at a clock the test sets, with the audit at hand."""
import time

import pytest

from cardgate.fastcore import ledger, records
from cardgate.fastcore.records import Op
from cardgate.gateway.store import audit
from cardgate.gateway.store.store import Store

NOW_S = 1_790_000_000                            # 2026-09-21 UTC
KEYS = [bytes([n]) * 32 for n in range(1, 5)]    # card keys (PAN HMACs) of cards 0..3


class Core:
    def __init__(self, store, now_s=NOW_S):
        self.store = store
        self.now_s = now_s
        self.n = 0

    def new_id(self):
        self.n += 1
        return self.n.to_bytes(16, "big")

    def apply(self, *packed):
        yyyymm = int(time.strftime("%Y%m", time.gmtime(self.now_s)))
        with self.store.env.begin(write=True) as txn:
            return records.unpack_replies(ledger.apply_batch(txn, self.store.dbs, b"".join(packed),
                                                             self.now_s, yyyymm))

    def rq(self, op, card=None, **fields):
        """A packed request; card: the index of the card in KEYS."""
        if card is not None:
            fields["card_key"] = KEYS[card]
        return records.pack_request(op, fields.pop("request_id", None) or self.new_id(), **fields)

    def read(self, db_name, key):
        with self.store.env.begin() as txn:
            return txn.get(key, db=getattr(self.store, db_name))

    def audit(self):
        with self.store.env.begin() as txn:
            return audit.audit_store(self.store, txn)

    def audit_clean(self):
        violations, counts = self.audit()
        assert violations == []
        return counts


def new_core(tmp_path, currency="IDR", **range_fields):
    """A store with range 1 in `currency` and the cards of KEYS issued."""
    store = Store(tmp_path, sync=False, map_size_bytes=256 << 20)
    core = Core(store)
    core.apply(core.rq(Op.CREATE_RANGE, range_id=1, currency=currency, iin_prefix=627700,
                       iin_digits=6, pan_length=16, **range_fields),
               *[core.rq(Op.ISSUE_CARD, n, range_id=1, expiry_yyyymm=209912, pan_first6=627700,
                         pan_last4=1000 + n, pan_length=16) for n in range(len(KEYS))])
    return core


@pytest.fixture
def core(tmp_path):
    c = new_core(tmp_path)
    yield c
    c.store.close()
