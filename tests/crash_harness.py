"""Crash-under-load harness: a mixed workload against a real `cardgate serve` (payments,
pre-authorizations and their completions, loads, point redemptions, retries with the
same request ids), the gateway killed with SIGKILL at a random moment, N cycles on the
same data directory. After each restart it checks that:

- every request the client saw answered gets the very same answer again when retried
  (it is in the store exactly once: a second application would answer otherwise);
- every request the client never got an answer for is whole or absent: retried twice,
  it answers, and the same both times;
- the audit passes (double entry, balances, holds, point lots and their index).

It reports cycles, requests acknowledged, requests left unanswered by a kill, and
violations (must be 0). With --workers N the load is served by `serve --workers N`
(each worker its own writer on the one store) and every worker is killed at the same
moment. The test suite runs 20 cycles, and 6 with two workers
(tests/test_crash_harness.py); a longer soak:

    .venv/bin/python tests/crash_harness.py --cycles 200 [--seed 7] [--workers 2]
"""
import argparse
import dataclasses
import pathlib
import random
import sys
import tempfile
import threading
import time
import uuid

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from gateway_process import LIMITS_LIFTED, GatewayProcess  # noqa: E402

from cardgate.gateway.cli.demo import read_demo_pans  # noqa: E402
from cardgate.gateway.store.audit import audit  # noqa: E402
from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2,  # noqa: E402
                         loyalty_pb2, loyalty_pb2_grpc)

CLIENT_THREADS = 4
GIFT_CARDS = 3                  # the demo's first cards (the last is a fleet card)
KILL_AFTER_S = (0.2, 0.9)


def eur(minor):
    return common_pb2.Money(amount_minor=minor, currency="EUR")


@dataclasses.dataclass
class Sent:
    method: str                 # the stub method
    request: object
    answer: object = None       # the authorization the client saw, or None (no answer)


class Stubs:
    def __init__(self, channel):
        self.auth = authorization_pb2_grpc.AuthorizationServiceStub(channel)
        self.loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(channel)

    def call(self, sent: Sent, timeout_s=5):
        stub = self.loyalty if sent.method == "RedeemPoints" else self.auth
        return getattr(stub, sent.method)(sent.request, timeout=timeout_s).authorization


def workload(stubs, pans, rng, record, stop, mismatch):
    """Mixed requests until the gateway goes away (or stop); record(Sent) before each."""
    answered = []
    while not stop.is_set():
        pan, rid = rng.choice(pans), str(uuid.uuid4())
        kind = rng.random()
        if kind < 0.3:
            sent = Sent("Purchase", authorization_pb2.PurchaseRequest(
                request_id=rid, pan=pan, amount=eur(rng.randint(10, 300))))
        elif kind < 0.45:
            sent = Sent("LoadValue", authorization_pb2.LoadValueRequest(
                request_id=rid, pan=pan, amount=eur(rng.randint(100, 500))))
        elif kind < 0.65:
            sent = Sent("PreAuthorize", authorization_pb2.PreAuthorizeRequest(
                request_id=rid, pan=pan, amount=eur(500)))
        elif kind < 0.8:
            sent = Sent("RedeemPoints", loyalty_pb2.RedeemPointsRequest(
                request_id=rid, pan=pan, points=rng.randint(1, 3)))
        elif answered:                  # a retry of something answered: the same answer
            earlier = rng.choice(answered)
            sent = Sent(earlier.method, earlier.request, earlier.answer)
        else:
            continue
        record(sent)
        try:
            answer = stubs.call(sent)
        except grpc.RpcError:
            return                      # the gateway is gone
        if sent.answer is None:
            sent.answer = answer
        elif answer != sent.answer:
            mismatch(f"{sent.method} {sent.request.request_id} retried while serving answered "
                     f"{answer.result_code}/{answer.approval_code}, first "
                     f"{sent.answer.result_code}/{sent.answer.approval_code}")
        answered.append(sent)
        if sent.method == "PreAuthorize" and answer.result_code == common_pb2.RESULT_CODE_APPROVED \
                and rng.random() < 0.8:
            done = Sent("CompletePreAuthorization", authorization_pb2.CompletePreAuthorizationRequest(
                request_id=str(uuid.uuid4()), pan=pan, hold_id=rid, amount=eur(rng.randint(0, 500))))
            record(done)
            try:
                done.answer = stubs.call(done)
            except grpc.RpcError:
                return
            answered.append(done)


def run(cycles: int, data_dir=None, seed: int = None, say=print, workers: int = 1) -> dict:
    rng = random.Random(seed)
    data_dir = pathlib.Path(data_dir or tempfile.mkdtemp(prefix="cardgate-crash-"))
    totals = {"cycles": 0, "acknowledged": 0, "unanswered": 0, "violations": 0, "problems": []}

    def violation(text):
        totals["violations"] += 1
        totals["problems"].append(text)

    pans = None
    loaded_options = LIMITS_LIFTED + (("--workers", str(workers)) if workers > 1 else ())
    for cycle in range(1, cycles + 1):
        gateway = GatewayProcess(data_dir, *loaded_options)
        pans = pans or read_demo_pans(data_dir)[:GIFT_CARDS]
        sent, lock, stop = [], threading.Lock(), threading.Event()

        def record(s):
            with lock:
                sent.append(s)

        channels = [gateway.channel(own_connection=True) for _ in range(CLIENT_THREADS)]
        threads = [threading.Thread(target=workload, args=(Stubs(c), pans, random.Random(rng.random()),
                                                          record, stop, violation)) for c in channels]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(*KILL_AFTER_S))
        gateway.kill()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        for c in channels:
            c.close()

        gateway = GatewayProcess(data_dir, *LIMITS_LIFTED)
        try:
            with gateway.channel() as channel:
                stubs = Stubs(channel)
                for s in sent:
                    try:
                        if s.answer is not None:
                            again = stubs.call(s)
                            if again != s.answer:
                                violation(f"cycle {cycle}: {s.method} {s.request.request_id} answered "
                                          f"{s.answer.result_code}/{s.answer.approval_code}, now "
                                          f"{again.result_code}/{again.approval_code}")
                        else:
                            first, second = stubs.call(s), stubs.call(s)
                            if first != second:
                                violation(f"cycle {cycle}: unanswered {s.method} {s.request.request_id} "
                                          "answers differently on two retries")
                    except grpc.RpcError as exc:
                        violation(f"cycle {cycle}: {s.method} {s.request.request_id} retried: "
                                  f"{exc.code().name} {exc.details()}")
            problems, _ = audit(data_dir)
            for problem in problems:
                violation(f"cycle {cycle}: audit: {problem}")
        finally:
            gateway.stop()
        acknowledged = sum(s.answer is not None for s in sent)
        totals["cycles"] += 1
        totals["acknowledged"] += acknowledged
        totals["unanswered"] += len(sent) - acknowledged
        say(f"cycle {cycle}: {acknowledged} acknowledged, {len(sent) - acknowledged} unanswered at the "
            f"kill, violations so far {totals['violations']}")
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--data-dir", default=None, help="default: a new temporary folder")
    parser.add_argument("--workers", type=int, default=1,
                        help="serve the load with `serve --workers N`, every worker killed at once")
    args = parser.parse_args(argv)
    started = time.monotonic()
    totals = run(args.cycles, args.data_dir, args.seed, workers=args.workers)
    print(f"{totals['cycles']} cycles in {time.monotonic() - started:.0f} s: "
          f"{totals['acknowledged']} requests acknowledged, {totals['unanswered']} unanswered at a "
          f"kill, {totals['violations']} violations")
    for problem in totals["problems"][:20]:
        print(f"  - {problem}")
    return 1 if totals["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
