"""fastcore as a compiled extension, and the edges the property tests cannot reach."""
import importlib.machinery
import pathlib

import pytest

from cardgate.fastcore import ledger, records
from cardgate.fastcore.records import Op, Result
from cardgate.gateway.store.store import Store

NOW_S, NOW_YYYYMM = 1_790_000_000, 202609


def test_core_modules_are_compiled_extensions():
    for module in (records, ledger):
        path = pathlib.Path(module.__file__)
        assert any(path.name.endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES), path
        assert isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader)
        # no pure-Python twin lies beside it to be imported instead
        assert not path.with_name(path.name.split(".")[0] + ".py").exists()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path, sync=False, map_size_bytes=64 << 20)
    yield s
    s.close()


def apply(store, *packed):
    with store.env.begin(write=True) as txn:
        return records.unpack_replies(ledger.apply_batch(txn, store.dbs, b"".join(packed),
                                                         NOW_S, NOW_YYYYMM))


class Ids:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return self.n.to_bytes(16, "big")


def setup_card(store, new_id):
    key = b"\x07" * 32
    apply(store,
          records.pack_request(Op.CREATE_RANGE, new_id(), range_id=1, currency="EUR",
                               iin_prefix=627700, iin_digits=6, pan_length=16),
          records.pack_request(Op.ISSUE_CARD, new_id(), card_key=key, range_id=1,
                               expiry_yyyymm=209912, pan_first6=627700, pan_last4=1234,
                               pan_length=16))
    return key


def test_balance_never_exceeds_its_limit(store):
    new_id = Ids()
    key = setup_card(store, new_id)
    loads = [records.pack_request(Op.LOAD, new_id(), card_key=key, currency="EUR",
                                  amount_minor=records.AMOUNT_MINOR_MAX)
             for _ in range(records.BALANCE_MINOR_MAX // records.AMOUNT_MINOR_MAX)]
    assert all(r.result == Result.APPROVED for r in apply(store, *loads))
    one_more = apply(store, records.pack_request(Op.LOAD, new_id(), card_key=key, currency="EUR",
                                                 amount_minor=1))[0]
    assert one_more.result == Result.DECLINED_BALANCE_LIMIT_EXCEEDED
    assert one_more.balance_minor == records.BALANCE_MINOR_MAX


def test_a_batch_that_fails_in_storage_leaves_nothing(tmp_path):
    new_id = Ids()
    small = Store(tmp_path, sync=False, map_size_bytes=256 << 10)
    try:
        setup_card(small, new_id)
        key = b"\x07" * 32
        apply(small, records.pack_request(Op.LOAD, new_id(), card_key=key, currency="EUR",
                                          amount_minor=500))
        with small.env.begin() as txn:
            before = {name: list(txn.cursor(db=db)) for name, db in zip("abcde", small.dbs)}
        import lmdb
        with pytest.raises(lmdb.MapFullError):
            apply(small, *[records.pack_request(Op.PURCHASE, new_id(), card_key=key, currency="EUR",
                                                amount_minor=1) for _ in range(5000)])
        with small.env.begin() as txn:
            after = {name: list(txn.cursor(db=db)) for name, db in zip("abcde", small.dbs)}
        assert after == before
    finally:
        small.close()


def test_batch_must_be_whole_requests(store):
    with pytest.raises(ValueError, match="ends inside a request"):
        with store.env.begin(write=True) as txn:
            ledger.apply_batch(txn, store.dbs, b"\x00" * (records.REQUEST_SIZE + 1), NOW_S, NOW_YYYYMM)
    profile = records.pack_request(Op.SET_PROFILE, b"\x01" * 16, profile_id=1,
                                   payload=records.pack_profile(1))
    with pytest.raises(ValueError, match="ends inside a payload"):
        with store.env.begin(write=True) as txn:
            ledger.apply_batch(txn, store.dbs, profile[:-1], NOW_S, NOW_YYYYMM)


def test_pack_request_refuses_malformed_fields():
    with pytest.raises(ValueError, match="16 bytes"):
        records.pack_request(Op.LOAD, b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        records.pack_request(Op.LOAD, b"\x01" * 16, card_key=b"\x02" * 31)
    with pytest.raises(ValueError, match="3 letters"):
        records.pack_request(Op.LOAD, b"\x01" * 16, currency="EURO")


def test_a_store_of_another_format_is_refused_not_misread(tmp_path):
    from cardgate.gateway.store.store import Store, StoreFormatError

    Store(tmp_path / "new").close()                      # a new store is marked with ours
    reopened = Store(tmp_path / "new", readonly=True)
    reopened.close()
    old = tmp_path / "old"
    store = Store(old)
    with store.env.begin(write=True) as txn:             # as the previous layout left it:
        txn.delete(records.STORE_FORMAT_KEY, db=store.db_config)   # data, and no mark
        txn.put(b"next_card_id", (7).to_bytes(8, "big"), db=store.db_config)
    store.close()
    for readonly in (False, True):
        with pytest.raises(StoreFormatError, match="format 1 .or older.*new --data-dir"):
            Store(old, readonly=readonly)
    store = Store(tmp_path / "new")
    with store.env.begin(write=True) as txn:
        txn.put(records.STORE_FORMAT_KEY, b"99", db=store.db_config)
    store.close()
    with pytest.raises(StoreFormatError, match="format 99"):
        Store(tmp_path / "new")


@pytest.mark.parametrize("closing", ["paid out", "replaced"])
def test_a_reversal_puts_no_value_on_a_closed_card(tmp_path, closing):
    """A card loaded with 100.00 buys for 30.00, then is closed: its 70.00 paid out, or
    moved to its replacement. Reversing the purchase afterwards is declined CARD_CLOSED:
    no value lands on the closed card, the replacement keeps what it got, and the
    audit finds the ledger whole. (Before, the 30.00 came back onto the closed card.)"""
    from cardgate.gateway.store.audit import audit

    store = Store(tmp_path, sync=False, map_size_bytes=64 << 20)
    new_id, new_card = Ids(), b"\x09" * 32
    key = setup_card(store, new_id)
    apply(store, records.pack_request(Op.ISSUE_CARD, new_id(), card_key=new_card, range_id=1,
                                      expiry_yyyymm=209912, pan_first6=627700, pan_last4=9999,
                                      pan_length=16),
          records.pack_request(Op.LOAD, new_id(), card_key=key, currency="EUR", amount_minor=100_00))
    sale = new_id()
    assert apply(store, records.pack_request(Op.PURCHASE, sale, card_key=key, currency="EUR",
                                             amount_minor=30_00))[0].result == Result.APPROVED
    if closing == "paid out":
        close = records.pack_request(Op.DEACTIVATE, new_id(), card_key=key, reason=5,
                                     close_disposition=1)
    else:
        close = records.pack_request(Op.REPLACE_CARD, new_id(), card_key=key, payload=new_card)
    closed = apply(store, close)[0]
    assert closed.result == Result.APPROVED, closed
    reversal = apply(store, records.pack_request(Op.REVERSAL, new_id(), card_key=key,
                                                 ref_request_id=sale))[0]
    assert reversal.result == Result.DECLINED_CARD_CLOSED
    assert reversal.balance_minor == 0 and reversal.card_status == records.CardStatus.CLOSED
    card, account = store.read_card(key)
    assert account.balance_minor == 0
    replacement = store.read_card(new_card)[1].balance_minor
    assert replacement == (70_00 if closing == "replaced" else 0)
    store.close()
    assert audit(tmp_path)[0] == []
