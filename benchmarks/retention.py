"""Store bytes per 1,000,000 purchases, retention on (the default windows) and off.

    python -m benchmarks.retention [--purchases 1000000] [--days 70] [--cards 10000]

The gateway's writer applies the purchases (batches of 1000, its group commit and its
pruning, as served) while a test clock spreads them over --days: with retention on, the
requests older than their 35-day window are pruned as it goes, so about
(days - 35) / days of them are gone at the end. For each run: the bytes of the pages the
store's databases use (live), the file's high-water mark (LMDB reuses freed pages but
never shrinks its file) and what the idempotency records and the retention index hold.
"""
import argparse
import random
import tempfile
import time

from cardgate.fastcore import records
from cardgate.fastcore.records import Op
from cardgate.gateway.request_ids import uuid7
from cardgate.gateway.store import retention
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import BatchingWriter

from benchmarks.core_throughput import card_key_of, populate_core

START_S = 1_790_000_000
BATCH = 1000


def live_bytes(store) -> int:
    """Bytes of the pages every database of the store uses (tree and overflow pages)."""
    with store.env.begin() as txn:
        stats = [txn.stat(db) for db in store.databases_by_name().values()]
    return sum((s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]) * s["psize"]
               for s in stats)


def file_bytes(store) -> int:
    return (store.env.info()["last_pgno"] + 1) * store.env.stat()["psize"]


def run(root, cards: int, purchases: int, days: int, windows) -> dict:
    populate_core(root, cards, START_S)
    store = Store(root, map_size_bytes=64 << 30, sync=False)
    clock = [START_S]
    writer = BatchingWriter(store, clock=lambda: clock[0], retention_windows=windows).start()
    step_s = days * 86400 // (purchases // BATCH)
    rng = random.Random(7)
    started = time.perf_counter()
    try:
        for _ in range(purchases // BATCH):
            writer.submit([records.pack_request(
                Op.PURCHASE, uuid7().bytes, card_key=card_key_of(rng.randrange(cards)),
                currency="EUR", amount_minor=1) for _ in range(BATCH)])
            clock[0] += step_s
        elapsed = time.perf_counter() - started
        with store.env.begin() as txn:
            requests = txn.stat(store.db_requests)["entries"]
            indexed = txn.stat(store.db_retention)["entries"]
        return {"live": live_bytes(store), "file": file_bytes(store), "requests": requests,
                "indexed": indexed, "per_s": purchases / elapsed}
    finally:
        writer.stop()
        store.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=70)
    parser.add_argument("--cards", type=int, default=10_000)
    args = parser.parse_args(argv)
    print(f"{args.purchases:,} purchases over {args.days} days on {args.cards:,} cards, "
          f"batches of {BATCH}")
    results = {}
    for name, windows in (("off", None), ("on", retention.Windows())):
        with tempfile.TemporaryDirectory(prefix=f"cardgate-retention-{name}-") as parent:
            # (the data directory inside: its KEK file, beside it, goes with it)
            results[name] = run(f"{parent}/data", args.cards, args.purchases, args.days, windows)
    per_million = 1_000_000 / args.purchases
    print(f"{'retention':<10} {'live MB':>9} {'file MB':>9} {'B/purchase':>11} "
          f"{'requests kept':>14} {'index':>9} {'purchases/s':>12}")
    for name, r in results.items():
        print(f"{name:<10} {r['live'] * per_million / 1e6:>9.1f} {r['file'] * per_million / 1e6:>9.1f} "
              f"{r['live'] / args.purchases:>11.0f} {r['requests']:>14,} {r['indexed']:>9,} "
              f"{r['per_s']:>12,.0f}")
    print(f"live bytes with retention on / off: {results['on']['live'] / results['off']['live']:.2f} "
          f"(expected near {min(1.0, 35 / args.days):.2f} for the requests' part)")


if __name__ == "__main__":
    main()
