"""Batch issuing: the time to issue 50,000 cards with IssueCards over gRPC (mutual TLS,
a gateway in this process), numbered in order, drawn at random, and in order with a
holder's name each, every PAN generated with its check digit, stored encrypted and
indexed, progress streamed per 500; then the time to export the first batch as a
personalization job, signed and sealed. The limit beside it: raw LMDB doing the same
writes (a card record, an index entry and an encrypted PAN per card, 500 cards a synced
commit).

    python -m benchmarks.issue_cards [--cards 50000]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid

import lmdb

HOLDERS_PER_REQUEST = 2_000

from cardgate.gateway.api.server import Gateway
from cardgate.gateway.cli.channels import open_channel
from cardgate.v1 import common_pb2, issuing_pb2, issuing_pb2_grpc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=50_000)
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="cardgate-bench-")
    gateway = Gateway(f"{root}/data", "127.0.0.1:0").start()
    try:
        gateway.pki.issue("operator", "bench-operator", f"{root}/certs")
        with open_channel(gateway.address, f"{root}/certs", "bench-operator") as channel:
            issuing = issuing_pb2_grpc.IssuingServiceStub(channel)
            issuing.CreateCardRange(issuing_pb2.CreateCardRangeRequest(
                request_id=str(uuid.uuid4()), range_id=1, iin_prefix="627700", pan_length=16,
                currency="EUR", name="bench"))
            first_batch = None
            for name, numbering in (("in order", issuing_pb2.CARD_NUMBERING_SEQUENTIAL),
                                    ("at random", issuing_pb2.CARD_NUMBERING_RANDOM)):
                started, parts, last, request_id = time.perf_counter(), 0, None, str(uuid.uuid4())
                first_batch = first_batch or request_id
                for last in issuing.IssueCards(issuing_pb2.IssueCardsRequest(
                        request_id=request_id, range_id=1, count=args.cards,
                        expiry_yyyymm=209912, numbering=numbering), timeout=3600):
                    parts += 1
                took = time.perf_counter() - started
                assert last.issued == args.cards and all(
                    c.result_code == common_pb2.RESULT_CODE_APPROVED for c in last.cards), last
                print(f"{args.cards:,} cards {name}: {took:.1f} s, {args.cards / took:,.0f} cards/s "
                      f"({parts} progress messages)", flush=True)

            # With a holder's name each: requests of HOLDERS_PER_REQUEST names (what fits).
            started = time.perf_counter()
            for first in range(0, args.cards, HOLDERS_PER_REQUEST):
                names = [f"HOLDER {i:07d}" for i in range(first, min(args.cards, first + HOLDERS_PER_REQUEST))]
                for last in issuing.IssueCards(issuing_pb2.IssueCardsRequest(
                        request_id=str(uuid.uuid4()), range_id=1, holder_names=names,
                        expiry_yyyymm=209912, numbering=issuing_pb2.CARD_NUMBERING_SEQUENTIAL), timeout=3600):
                    pass
                assert last.issued == len(names), (last.issued, last.total, last.cards[:2])
            took = time.perf_counter() - started
            print(f"{args.cards:,} cards with holders ({HOLDERS_PER_REQUEST:,} a request): {took:.1f} s, "
                  f"{args.cards / took:,.0f} cards/s", flush=True)

            # The personalization job of the first batch, sealed to a bureau's certificate.
            gateway.pki.issue("bureau", "bench-bureau", f"{root}/certs")
            with open(f"{root}/certs/bench-bureau.crt", "rb") as f:
                bureau_cert = f.read()
            started, size, messages = time.perf_counter(), 0, 0
            for part in issuing.ExportPersonalizationJob(issuing_pb2.ExportPersonalizationJobRequest(
                    request_id=str(uuid.uuid4()), issue_request_id=first_batch,
                    chip=issuing_pb2.ChipProfile(aid=b"\xf0\x01\x01"), bureau_certificate_pem=bureau_cert),
                    timeout=3600):
                size, messages = size + len(part.job_file), messages + 1
            took = time.perf_counter() - started
            assert part.cards == args.cards
            print(f"job export of {args.cards:,} cards, signed and sealed: {took:.1f} s, "
                  f"{args.cards / took:,.0f} cards/s, {size / 2**20:.1f} MiB in {messages} messages",
                  flush=True)
        took = raw_lmdb(f"{root}/raw", args.cards)
        print(f"limit: raw LMDB, the same writes: {took:.1f} s, {args.cards / took:,.0f} cards/s")
    finally:
        gateway.stop()
        shutil.rmtree(root, ignore_errors=True)


def raw_lmdb(path, cards, per_commit=500) -> float:
    """Seconds for LMDB alone to store `cards` cards as the gateway does: per card a
    record (card and accounts, ~200 bytes), a PAN index entry and an encrypted PAN, in
    synced commits of `per_commit` cards, random keys for the index."""
    env = lmdb.open(path, map_size=4 << 30, max_dbs=4, sync=True, metasync=True)
    book, index, pans = (env.open_db(name) for name in (b"book", b"index", b"pans"))
    started = time.perf_counter()
    for first in range(0, cards, per_commit):
        with env.begin(write=True) as txn:
            for card_id in range(first + 1, min(cards, first + per_commit) + 1):
                key = card_id.to_bytes(8, "big")
                txn.put(key, os.urandom(200), db=book)
                txn.put(os.urandom(32), key, db=index)
                txn.put(key, os.urandom(46), db=pans)
    took = time.perf_counter() - started
    env.close()
    return took


if __name__ == "__main__":
    sys.exit(main())
