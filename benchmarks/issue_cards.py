"""Batch issuing: the time to issue 50,000 cards with IssueCards over gRPC (mutual TLS,
a gateway in this process), numbered in order and drawn at random, each PAN generated
with its check digit, stored encrypted and indexed, progress streamed per 500.

    python -m benchmarks.issue_cards [--cards 50000]
"""
import argparse
import shutil
import sys
import tempfile
import time
import uuid

from cardgate.gateway.channels import open_channel
from cardgate.gateway.server import Gateway
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
            for name, numbering in (("in order", issuing_pb2.CARD_NUMBERING_SEQUENTIAL),
                                    ("at random", issuing_pb2.CARD_NUMBERING_RANDOM)):
                started, parts, last = time.perf_counter(), 0, None
                for last in issuing.IssueCards(issuing_pb2.IssueCardsRequest(
                        request_id=str(uuid.uuid4()), range_id=1, count=args.cards,
                        expiry_yyyymm=209912, numbering=numbering), timeout=3600):
                    parts += 1
                took = time.perf_counter() - started
                assert last.issued == args.cards and all(
                    c.result_code == common_pb2.RESULT_CODE_APPROVED for c in last.cards), last
                print(f"{args.cards:,} cards {name}: {took:.1f} s, {args.cards / took:,.0f} cards/s "
                      f"({parts} progress messages)", flush=True)
    finally:
        gateway.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
