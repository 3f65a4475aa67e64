"""fastcore in-process: durable purchases/s that earn loyalty points by a program of 50
earn rules across 1,000 outlets, beside plain purchases (the foundation's payment
figure) on the same cards, in the same run.

    python -m benchmarks.loyalty_throughput [--cards 1000000] [--batch-size 1000]

Plain purchases are measured first, before the card range joins the program; then the
program, its outlets and rules are defined and the same kind of purchases (now with
fuel lines, at random outlets) earn as they are authorized: rules evaluated, a lot of
points written, the member's tier counted, a statement line kept. Goal: earning >= 0.7
of plain payments.
"""
import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time

from cardgate.fastcore import ledger, records
from cardgate.fastcore.records import Op, Result, Rule, RuleKind, RuleScope, Tier
from cardgate.gateway.request_ids import uuid7
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import yyyymm_of

from .core_throughput import card_key_of, durable_seconds, populate_core

GOAL_RATIO = 0.7
OUTLETS = 1_000
PARTNERS = 10
RULES = 50
DIESEL, PETROL, SHOP = 1, 2, 30


def outlet_code(i: int) -> int:
    return 0x1000_0000 + i


def program_requests(rng) -> list:
    """Catalog, 1,000 outlets of 10 partners, program 1 on range 1 (tiers, bonuses,
    discounts) and 50 rules of every kind and scope."""
    out = [records.pack_request(Op.DEFINE_PRODUCT, uuid7().bytes, product_code=code,
                                product_kind=kind, product_name=name)
           for code, kind, name in ((DIESEL, 1, "diesel"), (PETROL, 1, "petrol"), (SHOP, 2, "shop"))]
    out += [records.pack_request(Op.DEFINE_PARTNER, uuid7().bytes, partner_id=1 + p,
                                 partner_name=f"partner {1 + p}") for p in range(PARTNERS)]
    for i in range(OUTLETS):
        code = outlet_code(i)
        out.append(records.pack_request(Op.DEFINE_OUTLET, uuid7().bytes, outlet_code=code,
                                        payload=records.pack_outlet(code, 0, f"m{i % PARTNERS}/o{i}",
                                                                    1 + i % PARTNERS)))
    out.append(records.pack_request(Op.SET_PROGRAM, uuid7().bytes, payload=records.pack_program(
        1, records.ExpiryKind.MONTH_END_AFTER, 12, 0, 60, [1],
        tiers=(Tier("Silver", 100_00, 1250), Tier("Gold", 1_000_00, 1500)),
        welcome_points=50, birthday_points=100, birthday_window_days=3)))
    rules = []
    for i in range(RULES):
        places = tuple(outlet_code(rng.randrange(OUTLETS)) for _ in range(16))
        kind = (RuleKind.PER_AMOUNT, RuleKind.PER_VOLUME, RuleKind.PER_VOLUME, RuleKind.MULTIPLIER,
                RuleKind.FIXED)[i % 5]
        scope = (RuleScope.OUTLETS, RuleScope.PARTNER, RuleScope.ALL)[i % 3]
        rules.append(Rule(
            i + 1, kind, {RuleKind.MULTIPLIER: 1500, RuleKind.FIXED: 20}.get(kind, 1 + i % 3),
            1000 if kind in (RuleKind.PER_AMOUNT, RuleKind.PER_VOLUME) else 0, scope,
            places if scope == RuleScope.OUTLETS else (),
            1 + i % PARTNERS if scope == RuleScope.PARTNER else 0,
            (DIESEL,) if kind == RuleKind.PER_VOLUME else (SHOP,) if kind == RuleKind.FIXED else (),
            days_mask=0b1100000 if kind == RuleKind.MULTIPLIER else 0,
            minute_from=6 * 60 if i % 7 == 0 else 0, minute_to=22 * 60 if i % 7 == 0 else 0))
    out.append(records.pack_request(Op.SET_RULES, uuid7().bytes, profile_id=1,
                                    payload=records.pack_rules(rules)))
    return out


def purchases(rng, cards: int, count: int, with_sale_details: bool) -> list:
    return [records.pack_request(
        Op.PURCHASE, uuid7().bytes, card_key=card_key_of(rng.randrange(cards)), currency="EUR",
        amount_minor=rng.randrange(5_00, 120_00),
        volume_ml=rng.randrange(5_000, 60_000) if with_sale_details else 0,
        products=(DIESEL, SHOP) if with_sale_details else (),
        outlet_code=outlet_code(rng.randrange(OUTLETS)) if with_sale_details else 0)
        for _ in range(count)]


def durable_rate(data_dir, packed: list, batch_size: int, now_s: int, earning: bool) -> float:
    batches = [b"".join(packed[i:i + batch_size]) for i in range(0, len(packed), batch_size)]
    elapsed, _, last = durable_seconds(data_dir, batches, now_s)
    assert (last.points_earned > 0) == earning, last
    return len(packed) / elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--operations", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    parser.add_argument("--dir", default=None, help="where to put the store (default: a temp dir)")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="cardgate-bench-", dir=args.dir)
    now_s = int(time.time())
    rng = random.Random(5)
    try:
        started = time.perf_counter()
        populate_core(root, args.cards, now_s)
        print(f"set-up: {args.cards:,} cards in {time.perf_counter() - started:.0f} s", flush=True)
        plain = statistics.median(
            durable_rate(root, purchases(rng, args.cards, args.operations, False), args.batch_size,
                         now_s, False) for _ in range(args.repeats))
        store = Store(root, map_size_bytes=64 << 30)
        with store.env.begin(write=True) as txn:
            replies = records.unpack_replies(ledger.apply_batch(
                txn, store.dbs, b"".join(program_requests(rng)), now_s, yyyymm_of(now_s)))
        store.close()
        assert all(r.result == Result.APPROVED for r in replies), replies[-1]
        earning = statistics.median(
            durable_rate(root, purchases(rng, args.cards, args.operations, True), args.batch_size,
                         now_s, True) for _ in range(args.repeats))
        print(f"batch {args.batch_size}, {args.operations:,} purchases per run, median of "
              f"{args.repeats}:")
        print(f"  plain purchases/s                         {plain:>10,.0f}")
        print(f"  earning purchases/s ({RULES} rules, {OUTLETS:,} outlets) {earning:>10,.0f}   "
              f"ratio {earning / plain:.2f} (goal >= {GOAL_RATIO})", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
