"""Transactions exported per second from a store of N journal entries, beside a raw LMDB
cursor scan of the same entries, in one run on this machine.

    python -m benchmarks.export [--entries 10000000] [--export-days 3] [--cards 10000]
                                [--keep DIR]

Set-up (not measured): a store with --cards gift cards and --entries purchases applied
through the core (batches of 5,000, no sync), each carrying the TransactionDetails a
terminal's sale does (acceptor, masked PAN, a fuel line), spread over 30 days. Then the
last --export-days of them (an office's export of a period; 30: all) are read by:

  raw scan         py-lmdb cursor over the transactions database, values touched (the
                   limit: nothing is decoded)
  decode           the gateway's reader: records.Transaction of every line
  export, in process   reader + TransactionLine + CSV row, written to /dev/null
  export, gRPC     `cardgate transactions --out FILE` against a live gateway over mutual
                   TLS: the whole path an operator uses

Each figure is printed with its ratio to the raw scan.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import lmdb

from cardgate.fastcore import ledger, records
from cardgate.fastcore.records import Op
from cardgate.gateway.office import transactions
from cardgate.gateway.office.export import Writer
from cardgate.gateway.request_ids import uuid7
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import yyyymm_of
from cardgate.v1 import common_pb2, office_pb2

from benchmarks.core_throughput import card_key_of, populate_core

START_S = 1_790_000_000
BATCH = 5000


def details_payload(i: int) -> bytes:
    return office_pb2.TransactionDetails(
        acceptor=common_pb2.Acceptor(merchant_id="fuelco", outlet_id=f"station-{i % 40}",
                                     terminal_id=f"pump-{i % 8}"),
        masked_pan=f"627700******{i % 10_000:04d}",
        lines=[common_pb2.ProductLine(product_code=19, volume_ml=40_000 + i % 1000,
                                      unit_price_minor=1_60)]).SerializeToString()


def populate(root, cards: int, entries: int):
    populate_core(root, cards, START_S)
    store = Store(root, map_size_bytes=256 << 30, sync=False)
    step_s = 30 * 86400 * BATCH // max(entries, 1)
    now_s = START_S
    try:
        for start in range(0, entries, BATCH):
            batch = [records.pack_request(
                Op.PURCHASE, uuid7().bytes, card_key=card_key_of(i % cards), currency="EUR",
                amount_minor=64_00, payload=details_payload(i))
                for i in range(start, min(entries, start + BATCH))]
            with store.env.begin(write=True) as txn:
                ledger.apply_batch(txn, store.dbs, b"".join(batch), now_s, yyyymm_of(now_s))
            now_s += step_s
        store.env.sync(True)
    finally:
        store.close()
    return now_s


def raw_scan(root, from_s, until_s) -> tuple:
    env = lmdb.open(str(pathlib.Path(root) / "ledger"), readonly=True, lock=False, max_dbs=32)
    db = env.open_db(b"transactions", create=False)
    started = time.perf_counter()
    count = size = 0
    end = records.transaction_key(until_s)
    with env.begin(buffers=True) as txn:
        cursor = txn.cursor(db=db)
        cursor.set_range(records.transaction_key(from_s))
        for key, value in cursor:
            if bytes(key) >= end:
                break
            count += 1
            size += len(value)
    elapsed = time.perf_counter() - started
    env.close()
    return count, elapsed, size


def decode(root, from_s, until_s) -> tuple:
    store = Store(root, readonly=True)
    started = time.perf_counter()
    count = sum(1 for _ in transactions.of_period(store, from_s, until_s))
    elapsed = time.perf_counter() - started
    store.close()
    return count, elapsed


def export_in_process(root, from_s, until_s) -> tuple:
    store = Store(root, readonly=True)
    local = transactions.LocalTime(store)
    started = time.perf_counter()
    count = 0
    with open(os.devnull, "w") as out:
        writer = Writer(out, "csv")
        for tx in transactions.of_period(store, from_s, until_s):
            writer.write(transactions.line_of(tx, local, {}))
            count += 1
    elapsed = time.perf_counter() - started
    store.close()
    return count, elapsed


def export_grpc(root, from_s, until_s, out_file) -> tuple:
    from cardgate.gateway.api.server import Gateway
    gateway = Gateway(root, "127.0.0.1:0", map_size_bytes=256 << 30).start()
    certs = pathlib.Path(root).parent / "bench-certs"
    gateway.pki.issue("operator", "bench-operator", certs)
    try:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "cardgate.gateway.cli.main", "transactions",
             "--from", time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(from_s)),
             "--until", time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(until_s)),
             "--out", str(out_file), "--target", gateway.address, "--cert-dir", str(certs),
             "--as", "bench-operator"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        elapsed = time.perf_counter() - started
    finally:
        gateway.stop()
    if done.returncode != 0:
        raise SystemExit(f"export failed: {done.stderr}")
    with open(out_file) as f:
        count = sum(1 for _ in f) - 1
    return count, elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--export-days", type=int, default=3,
                        help="export the last DAYS of the 30 the purchases span (default 3)")
    parser.add_argument("--keep", metavar="DIR", help="build the store here and keep it "
                        "(a second run with the same DIR skips the set-up)")
    args = parser.parse_args(argv)
    root = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="cardgate-export-")) / "data"
    marker = root / "export-bench-until"
    started = time.perf_counter()
    if marker.exists():
        until_s = int(marker.read_text())
        print(f"set-up: the store kept in {root}")
    else:
        until_s = populate(root, args.cards, args.entries) + 1
        marker.write_text(str(until_s))
        print(f"set-up: {args.entries:,} purchases with details on {args.cards:,} cards in "
              f"{time.perf_counter() - started:,.0f} s")
    from_s = until_s - args.export_days * 86400
    store = Store(root, readonly=True)
    with store.env.begin() as txn:
        journal = txn.stat(store.db_journal)["entries"]
    store.close()
    count, raw_s, size = raw_scan(root, from_s, until_s)
    print(f"store: {journal:,} journal entries; exporting the last {args.export_days} days: "
          f"{count:,} transactions of {size / count:,.0f} bytes")
    print(f"{'raw LMDB cursor scan (limit)':34} {count / raw_s:>12,.0f} entries/s")
    for name, (n, seconds) in (("decode (records.Transaction)", decode(root, from_s, until_s)),
                               ("export in process (CSV rows)",
                                export_in_process(root, from_s, until_s)),
                               ("export over gRPC, cardgate CLI",
                                export_grpc(root, from_s, until_s, root.parent / "export.csv"))):
        assert n == count, f"{name}: {n} lines of {count}"
        print(f"{name:34} {n / seconds:>12,.0f} lines/s     {n / seconds / (count / raw_s):.3f} of raw")


if __name__ == "__main__":
    main()
