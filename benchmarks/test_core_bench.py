"""pytest-benchmark suite: one durable batch of 1000 purchases through fastcore, beside
the same number of raw py-lmdb read-modify-writes on the same keys (group "batch-1000").

    .venv/bin/python -m pytest benchmarks/ --benchmark-group-by=group

The two rows of the group are the figure and its limit; benchmarks/core_throughput.py
prints the ratio over 1,000,000 cards.
"""
import random

import lmdb
import pytest

from benchmarks.core_throughput import card_key_of, populate_core, populate_raw
from cardgate.fastcore import ledger, records
from cardgate.fastcore.records import Op, Result
from cardgate.gateway.request_ids import uuid7
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import yyyymm_of

CARDS = 100_000
BATCH = 1000
NOW_S = 1_790_000_000


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    populate_core(root / "core", CARDS, NOW_S)
    populate_raw(str(root / "raw"), CARDS)
    core = Store(root / "core", map_size_bytes=16 << 30, sync=True)
    raw = lmdb.open(str(root / "raw"), map_size=16 << 30, sync=True)
    yield core, raw
    core.close()
    raw.close()


@pytest.mark.benchmark(group="batch-1000")
def test_core_purchases_batch_1000(benchmark, stores):
    core, _ = stores
    rng = random.Random(1)

    def batch():
        return b"".join(records.pack_request(
            Op.PURCHASE, uuid7().bytes, card_key=card_key_of(rng.randrange(CARDS)),
            currency="EUR", amount_minor=1) for _ in range(BATCH))

    def apply(packed):
        with core.env.begin(write=True) as txn:
            return ledger.apply_batch(txn, core.dbs, packed, NOW_S, yyyymm_of(NOW_S))

    replies = benchmark.pedantic(apply, setup=lambda: ((batch(),), {}), rounds=20)
    assert records.unpack_replies(replies)[0].result == Result.APPROVED


@pytest.mark.benchmark(group="batch-1000")
def test_raw_lmdb_read_modify_write_batch_1000(benchmark, stores):
    _, raw = stores
    rng = random.Random(1)

    def keys():
        return [records.account_key(rng.randrange(CARDS) + 1, 0) for _ in range(BATCH)]

    def apply(batch_keys):
        with raw.begin(write=True) as txn:
            for key in batch_keys:
                value = bytearray(txn.get(key))
                value[0] ^= 1
                txn.put(key, bytes(value))

    benchmark.pedantic(apply, setup=lambda: ((keys(),), {}), rounds=20)
