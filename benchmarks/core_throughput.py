"""fastcore in-process: durable payments/s at several batch sizes over many cards, beside
raw py-lmdb read-modify-write of one 64-byte record per payment on the same keys.

    python -m benchmarks.core_throughput [--cards 1000000] [--batch-sizes 1,100,1000]

Both sides commit with sync on, one commit per batch, on the same disk in the same run,
so the ratio says what the ledger costs above the storage engine. Goal at batch 1000:
core >= 0.7 x raw LMDB (stretch 0.9). Beside each rate, the bytes the run wrote to
storage per operation (write_bytes of /proc/self/io): what a durable core costs is the
pages a request dirties.

The core is measured twice: with time-ordered request ids (UUIDv7, what cardgate's
clients send and terminal vendors are told to send) and with random ones (UUIDv4),
whose idempotency records each dirty a page of their own.
"""
import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid

import lmdb

from cardgate.fastcore import ledger, records
from cardgate.fastcore.records import Op, Result
from cardgate.gateway.request_ids import uuid7
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import yyyymm_of

SETUP_BATCH = 10_000
GOAL_RATIO_AT_1000 = 0.7
RECORD_BYTES = 64


def card_key_of(i: int) -> bytes:
    return i.to_bytes(32, "big")


def populate_core(data_dir, cards: int, now_s: int):
    """Issue and load `cards` gift cards, fast (no sync): set-up, not measured."""
    store = Store(data_dir, map_size_bytes=64 << 30, sync=False)
    yyyymm = yyyymm_of(now_s)
    with store.env.begin(write=True) as txn:
        ledger.apply_batch(txn, store.dbs, records.pack_request(
            Op.CREATE_RANGE, uuid7().bytes, range_id=1, currency="EUR", iin_prefix=627700,
            iin_digits=6, pan_length=16), now_s, yyyymm)
    for start in range(0, cards, SETUP_BATCH):
        batch = []
        for i in range(start, min(cards, start + SETUP_BATCH)):
            batch.append(records.pack_request(
                Op.ISSUE_CARD, uuid7().bytes, card_key=card_key_of(i), range_id=1,
                expiry_yyyymm=209912, pan_first6=627700, pan_last4=i % 10_000, pan_length=16))
            batch.append(records.pack_request(
                Op.LOAD, uuid7().bytes, card_key=card_key_of(i), currency="EUR",
                amount_minor=1_000_000_00))
        with store.env.begin(write=True) as txn:
            ledger.apply_batch(txn, store.dbs, b"".join(batch), now_s, yyyymm)
    store.env.sync(True)
    store.close()


def populate_raw(path, cards: int):
    env = lmdb.open(path, map_size=16 << 30, sync=False)
    value = bytes(RECORD_BYTES)
    for start in range(0, cards, SETUP_BATCH):
        with env.begin(write=True) as txn:
            for i in range(start, min(cards, start + SETUP_BATCH)):
                txn.put(records.account_key(i + 1, 0), value)
    env.sync(True)
    env.close()


def written_bytes() -> int:
    """Bytes this process caused to be written to storage so far (/proc/self/io)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes:"))


def durable_seconds(data_dir, batches, now_s):
    """(seconds, bytes written to storage, last reply) to apply the packed batches, one
    synced commit each (the last must approve)."""
    store = Store(data_dir, map_size_bytes=64 << 30, sync=True)
    try:
        written, started = written_bytes(), time.perf_counter()
        for batch in batches:
            with store.env.begin(write=True) as txn:
                replies = ledger.apply_batch(txn, store.dbs, batch, now_s, yyyymm_of(now_s))
        elapsed, written = time.perf_counter() - started, written_bytes() - written
    finally:
        store.close()
    last = records.unpack_replies(replies)[-1]
    assert last.result == Result.APPROVED, last
    return elapsed, written, last


def measure_core(data_dir, cards, batch_size, operations, now_s, new_id):
    rng = random.Random(batch_size)
    packed = [records.pack_request(Op.PURCHASE, new_id().bytes,
                                   card_key=card_key_of(rng.randrange(cards)),
                                   currency="EUR", amount_minor=1)
              for _ in range(operations)]
    batches = [b"".join(packed[i:i + batch_size]) for i in range(0, operations, batch_size)]
    seconds, written, _ = durable_seconds(data_dir, batches, now_s)
    return operations / seconds, written / operations


def measure_core_pairs(data_dir, cards, batch_size, pairs, now_s):
    """Pre-authorizations in one batch, their completions in the next: pairs a second."""
    rng = random.Random(batch_size + 7)
    batches = []
    for start in range(0, pairs, batch_size):
        holds = [(uuid7().bytes, card_key_of(rng.randrange(cards)))
                 for _ in range(min(batch_size, pairs - start))]
        batches.append(b"".join(records.pack_request(Op.PREAUTH, hold_id, card_key=key,
                                                     currency="EUR", amount_minor=5_000_00)
                                for hold_id, key in holds))
        batches.append(b"".join(records.pack_request(Op.COMPLETE, uuid7().bytes, card_key=key,
                                                     ref_request_id=hold_id, currency="EUR",
                                                     amount_minor=3_210_55)
                                for hold_id, key in holds))
    return pairs / durable_seconds(data_dir, batches, now_s)[0]


def measure_raw(path, cards, batch_size, operations):
    env = lmdb.open(path, map_size=16 << 30, sync=True)
    rng = random.Random(batch_size)
    keys = [records.account_key(rng.randrange(cards) + 1, 0) for _ in range(operations)]
    written, started = written_bytes(), time.perf_counter()
    for start in range(0, operations, batch_size):
        with env.begin(write=True) as txn:
            for key in keys[start:start + batch_size]:
                value = bytearray(txn.get(key))
                balance = int.from_bytes(value[:8], "little", signed=True) - 1
                value[:8] = balance.to_bytes(8, "little", signed=True)
                txn.put(key, bytes(value))
    elapsed, written = time.perf_counter() - started, written_bytes() - written
    env.close()
    return operations / elapsed, written / operations


def median_run(measure, repeats: int) -> tuple:
    """(rate, bytes per operation) of the run with the median rate."""
    runs = sorted((measure() for _ in range(repeats)), key=lambda run: run[0])
    return runs[len(runs) // 2]


def operations_for(batch_size: int) -> int:
    # enough commits at every batch size for a stable rate, bounded run time
    return {1: 3_000, 10: 10_000}.get(batch_size, max(20_000, batch_size * 100))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--batch-sizes", default="1,100,1000")
    parser.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    parser.add_argument("--dir", default=None, help="where to put the stores (default: a temp dir)")
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    root = tempfile.mkdtemp(prefix="cardgate-bench-", dir=args.dir)
    now_s = int(time.time())
    try:
        core_dir, raw_dir = os.path.join(root, "core"), os.path.join(root, "raw")
        started = time.perf_counter()
        populate_core(core_dir, args.cards, now_s)
        populate_raw(raw_dir, args.cards)
        print(f"set-up: {args.cards:,} cards in {time.perf_counter() - started:.0f} s; "
              f"store {os.path.getsize(os.path.join(core_dir, 'ledger', 'data.mdb')) / args.cards:.0f} "
              "bytes/card", flush=True)
        print(f"{'batch':>6} {'core, v7 ids /s':>16} {'core, v4 ids /s':>16} "
              f"{'raw LMDB rmw/s':>15} {'ratio v7':>9} {'ratio v4':>9} "
              f"{'B/op v7':>8} {'B/op v4':>8} {'B/op raw':>9}")
        for batch_size in batch_sizes:
            n = operations_for(batch_size)
            (core_v7, bytes_v7), (core_v4, bytes_v4), (raw, bytes_raw) = (
                median_run(measure, args.repeats) for measure in (
                    lambda: measure_core(core_dir, args.cards, batch_size, n, now_s, uuid7),
                    lambda: measure_core(core_dir, args.cards, batch_size, n, now_s, uuid.uuid4),
                    lambda: measure_raw(raw_dir, args.cards, batch_size, n)))
            goal = f"  (goal >= {GOAL_RATIO_AT_1000})" if batch_size == 1000 else ""
            print(f"{batch_size:>6} {core_v7:>16,.0f} {core_v4:>16,.0f} {raw:>15,.0f} "
                  f"{core_v7 / raw:>9.2f} {core_v4 / raw:>9.2f} "
                  f"{bytes_v7:>8,.0f} {bytes_v4:>8,.0f} {bytes_raw:>9,.0f}{goal}", flush=True)
        batch_size = max(batch_sizes)
        pairs = statistics.median(measure_core_pairs(core_dir, args.cards, batch_size,
                                                     operations_for(batch_size) // 2, now_s)
                                  for _ in range(args.repeats))
        print(f"pre-authorization + completion pairs/s at batch {batch_size}: {pairs:,.0f} "
              f"(beside {core_v7:,.0f} purchases/s above: {pairs / core_v7:.2f})", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
