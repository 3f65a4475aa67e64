"""Loyalty reports at scale: the time to compute a month's program analytics and the
expiring-soon list, over 1,000,000 cards and 10,000,000 journal entries.

    python -m benchmarks.loyalty_reports [--cards 1000000] [--entries 10000000]

Set-up (not measured, no sync): the cards are issued and loaded, join a program whose
points expire 60 days after the sale, and earning purchases spread over 60 days fill
the journal (two entries each: the payment and its points). Then, as the gateway does
them: GetProgramAnalytics for the last 30 days (with retention against the 30 before)
and ListExpiringPoints for the next 30 days, read page by page.
"""
import argparse
import random
import shutil
import sys
import tempfile
import time

from cardgate.fastcore import ledger, records
from cardgate.fastcore.records import Op, Result, Rule, RuleKind
from cardgate.gateway.api.loyalty import EXPIRING_PAGE_ROWS
from cardgate.gateway.loyalty import analytics
from cardgate.gateway.request_ids import uuid7
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import yyyymm_of

from .core_throughput import card_key_of, populate_core

DAYS = 60
BATCH = 20_000


def fill(root, cards: int, entries: int, start_s: int):
    store = Store(root, map_size_bytes=256 << 30, sync=False)
    program = records.pack_program(1, records.ExpiryKind.DAYS_AFTER, DAYS, 0, 0, [1])
    setup = [records.pack_request(Op.SET_PROGRAM, uuid7().bytes, payload=program),
             records.pack_request(Op.SET_RULES, uuid7().bytes, profile_id=1, payload=records.pack_rules(
                 [Rule(1, RuleKind.PER_AMOUNT, 1, 100)]))]
    with store.env.begin(write=True) as txn:
        ledger.apply_batch(txn, store.dbs, b"".join(setup), start_s, yyyymm_of(start_s))
    sales = max(0, (entries - cards) // 2)       # the loads made one entry a card
    rng = random.Random(11)
    per_second = sales / (DAYS * 86400)
    for start in range(0, sales, BATCH):
        now_s = start_s + int(start / per_second)
        batch = b"".join(records.pack_request(
            Op.PURCHASE, uuid7().bytes, card_key=card_key_of(rng.randrange(cards)), currency="EUR",
            amount_minor=rng.randrange(1_00, 80_00)) for _ in range(min(BATCH, sales - start)))
        with store.env.begin(write=True) as txn:
            replies = ledger.apply_batch(txn, store.dbs, batch, now_s, yyyymm_of(now_s))
        assert records.unpack_replies(replies)[-1].result == Result.APPROVED
    store.env.sync(True)
    with store.env.begin() as txn:
        total = txn.stat(store.db_journal)["entries"]
    store.close()
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--dir", default=None, help="where to put the store (default: a temp dir)")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="cardgate-bench-", dir=args.dir)
    start_s = int(time.time()) - DAYS * 86400
    try:
        started = time.perf_counter()
        populate_core(root, args.cards, start_s)
        total = fill(root, args.cards, args.entries, start_s)
        print(f"set-up: {args.cards:,} cards, {total:,} journal entries in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        now_s = start_s + DAYS * 86400
        store = Store(root, map_size_bytes=256 << 30, readonly=True)
        program = store.read_program(1)[0]
        started = time.perf_counter()
        with store.env.begin() as txn:
            figures = analytics.analyze(store, txn, program, now_s - 30 * 86400, now_s)
        took = time.perf_counter() - started
        print(f"analytics of the last 30 days (and the 30 before): {took:.1f} s - "
              f"{figures.transactions:,} sales by {figures.active_cards:,} cards, retention "
              f"{figures.retention_bp / 100:.1f} %, {figures.points_earned:,} points earned", flush=True)
        started = time.perf_counter()
        rows, points = 0, 0
        after = now_s.to_bytes(8, "big")
        while after is not None:
            page, after = store.read_points_expiring_page(after, now_s + 30 * 86400, EXPIRING_PAGE_ROWS)
            rows += len(page)
            points += sum(p for _, p, _ in page)
        took = time.perf_counter() - started
        print(f"expiring within 30 days: {rows:,} lots, {points:,} points, listed in {took:.1f} s "
              f"({rows / took:,.0f} rows/s)", flush=True)
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
