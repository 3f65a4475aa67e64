"""Soak: a mixed load at 70 % of the gateway's peak for 10 minutes. Not run in CI.

A real `cardgate serve` (mutual TLS, durable commits) on a new data directory, cards
issued and loaded. First the peak: the mixed load closed-loop (every client thread one
call in flight) for --peak-s. Then the soak: the same mix open-loop at --fraction of that
peak, each call sent at its scheduled time (its latency counted from then, so a stall is
not hidden by the clients waiting), for --duration-s. The mix: purchases, loads,
pre-authorizations and their completions, refunds, points earned and redeemed, and
retries of answered requests with the same ids (which must answer the same).

Every --interval-s it reports throughput, p50, p99, errors and the gateway's RSS
(anonymous: the heap; file-backed: the store's pages mapped in, which grow with the
data); at the end the totals, the heap's growth over the soak's second half, and the
goals: 0 errors (an RPC error, or a retry answered differently), throughput at the
target, no growth of the heap.

    python -m benchmarks.soak [--duration-s 600] [--fraction 0.7] [--cards 2000]
"""
import argparse
import multiprocessing
import queue
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

import grpc

from benchmarks.loadgen import issue_client_certificates, pan_of, prepare_cards, start_gateway
from benchmarks.process_memory import rss_mib
from cardgate.gateway.cli.channels import open_channel
from cardgate.gateway.cli.demo import clients_dir
from cardgate.gateway.request_ids import new_request_id
from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2, loyalty_pb2,
                         loyalty_pb2_grpc)

RSS_GROWTH_MAX = 0.10          # over the second half of the soak: "no growth", with noise
POINTS_VALID_S = 365 * 86400


def eur(minor):
    return common_pb2.Money(amount_minor=minor, currency="EUR")


class Mix:
    """One client thread's mixed requests. call() sends the next one (or the next two:
    a pre-authorization is followed by its completion) and returns (calls, errors)."""

    def __init__(self, channel, cards, rng):
        self.auth = authorization_pb2_grpc.AuthorizationServiceStub(channel)
        self.loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(channel)
        self.cards, self.rng = cards, rng
        self.answered = []          # (method, request, answer) to retry later
        self.purchases = []         # (pan, request_id) that can be refunded
        self.problems = []

    def _send(self, method, request):
        answer = method(request, timeout=10)
        if len(self.answered) < 1000:
            self.answered.append((method, request, answer))
        else:
            self.answered[self.rng.randrange(1000)] = (method, request, answer)
        return answer

    def call(self):
        rng, pan = self.rng, pan_of(self.rng.randrange(self.cards))
        kind = rng.random()
        try:
            if kind < 0.45:
                rid = new_request_id()
                answer = self._send(self.auth.Purchase, authorization_pb2.PurchaseRequest(
                    request_id=rid, pan=pan, amount=eur(rng.randint(100, 9000))))
                if answer.authorization.result_code == common_pb2.RESULT_CODE_APPROVED:
                    self.purchases = (self.purchases + [(pan, rid)])[-200:]
                return 1, 0
            if kind < 0.55:
                self._send(self.auth.LoadValue, authorization_pb2.LoadValueRequest(
                    request_id=new_request_id(), pan=pan, amount=eur(rng.randint(1000, 20000))))
                return 1, 0
            if kind < 0.70:
                rid = new_request_id()
                held = self._send(self.auth.PreAuthorize, authorization_pb2.PreAuthorizeRequest(
                    request_id=rid, pan=pan, amount=eur(10000)))
                if held.authorization.result_code != common_pb2.RESULT_CODE_APPROVED:
                    return 1, 0
                self._send(self.auth.CompletePreAuthorization, authorization_pb2.CompletePreAuthorizationRequest(
                    request_id=new_request_id(), pan=pan, hold_id=rid, amount=eur(rng.randint(0, 10000))))
                return 2, 0
            if kind < 0.75 and self.purchases:
                pan, original = self.purchases.pop(rng.randrange(len(self.purchases)))
                self._send(self.auth.Refund, authorization_pb2.RefundRequest(
                    request_id=new_request_id(), pan=pan, amount=eur(50), original_request_id=original))
                return 1, 0
            if kind < 0.85:
                self._send(self.loyalty.EarnPoints, loyalty_pb2.EarnPointsRequest(
                    request_id=new_request_id(), pan=pan, points=rng.randint(1, 50),
                    valid_until_s=int(time.time()) + POINTS_VALID_S))
                return 1, 0
            if kind < 0.92:
                self._send(self.loyalty.RedeemPoints, loyalty_pb2.RedeemPointsRequest(
                    request_id=new_request_id(), pan=pan, points=rng.randint(1, 5)))
                return 1, 0
            if self.answered:            # a retry: the very same answer again
                method, request, first = self.answered[rng.randrange(len(self.answered))]
                again = method(request, timeout=10)
                if _without_points(again.authorization) != _without_points(first.authorization):
                    self.problems.append(f"retry of {request.request_id} answered differently")
                    return 1, 1
                return 1, 0
            return 0, 0
        except grpc.RpcError as exc:
            if len(self.problems) < 20:
                self.problems.append(f"{exc.code().name}: {exc.details()}")
            return 1, 1


def _without_points(authorization):
    """The answer but for LoyaltyOutcome.points_balance, which is read when answering (see
    the proto), so a retry may show the card's points as they are then."""
    copy = type(authorization).FromString(authorization.SerializeToString())
    copy.loyalty.points_balance = 0
    return copy


def client_process(address, data_dir, cards, threads, rate_per_s, duration_s, interval_s, seed, out):
    """`threads` client threads. rate_per_s 0: closed loop (one call in flight each);
    else open loop at rate_per_s for the process, latency counted from each call's
    scheduled time. Puts {interval: [latencies], "errors": {interval: n}, "problems": [...]}."""
    windows, errors, problems, lock = {}, {}, [], threading.Lock()
    begin = time.monotonic() + 1.0
    end = begin + duration_s
    period = threads / rate_per_s if rate_per_s else 0.0

    def run(i):
        channel = open_channel(address, clients_dir(data_dir), "bench-terminal")
        mix = Mix(channel, cards, random.Random(seed * 1000 + i))
        due = begin + period * i / threads
        mine, my_errors = {}, {}
        while True:
            if period:
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                sent = due
            else:
                sent = time.monotonic()
            if sent >= end:
                break
            calls, failed = mix.call()
            due += period * max(calls, 1)     # a pre-authorization and its completion: two slots
            window = int((sent - begin) // interval_s) if sent >= begin else None
            if window is not None and calls:
                mine.setdefault(window, []).extend([time.monotonic() - sent] * calls)
                if failed:
                    my_errors[window] = my_errors.get(window, 0) + failed
        channel.close()
        with lock:
            for w, values in mine.items():
                windows.setdefault(w, []).extend(values)
            for w, n in my_errors.items():
                errors[w] = errors.get(w, 0) + n
            problems.extend(mix.problems)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    out.put((windows, errors, problems[:20]))


def drive(address, data_dir, args, rate_per_s, duration_s, interval_s, gateway_pid):
    """Per interval: (calls/s, p50 ms, p99 ms, errors, RSS MiB); and the problems seen."""
    out = multiprocessing.Queue()
    rss, stop = {}, threading.Event()
    begin = time.monotonic() + 1.0

    def sample_rss():
        while not stop.wait(1.0):
            if time.monotonic() >= begin:
                memory = rss_mib(gateway_pid)
                rss[int((time.monotonic() - begin) // interval_s)] = (memory["RssAnon"], memory["RssFile"])

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    procs = [multiprocessing.Process(target=client_process, args=(
        address, data_dir, args.cards, args.threads, rate_per_s / args.processes, duration_s,
        interval_s, seed, out)) for seed in range(args.processes)]
    for p in procs:
        p.start()
    windows, errors, problems = {}, {}, []
    for _ in procs:
        try:
            w, e, pr = out.get(timeout=duration_s + 300)
        except queue.Empty:
            raise RuntimeError("a client process did not report (see its traceback above)") from None
        for k, v in w.items():
            windows.setdefault(k, []).extend(v)
        for k, v in e.items():
            errors[k] = errors.get(k, 0) + v
        problems += pr
    for p in procs:
        p.join()
    stop.set()
    rows = []
    for w in range(int(duration_s // interval_s)):
        lat = sorted(windows.get(w, []))
        rows.append((len(lat) / interval_s,
                     lat[len(lat) // 2] * 1e3 if lat else float("nan"),
                     lat[int(len(lat) * 0.99)] * 1e3 if lat else float("nan"),
                     errors.get(w, 0), rss.get(w, (float("nan"), float("nan")))))
    return rows, problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--fraction", type=float, default=0.7, help="of the peak (default 0.7)")
    parser.add_argument("--peak-s", type=float, default=20.0)
    parser.add_argument("--interval-s", type=float, default=30.0)
    parser.add_argument("--cards", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=8, help="client threads per process")
    args = parser.parse_args(argv)
    data_dir = tempfile.mkdtemp(prefix="cardgate-soak-")
    gateway, address = start_gateway(data_dir, serve_options=("--metrics-listen", "127.0.0.1:0"))
    try:
        issue_client_certificates(data_dir)
        prepare_cards(address, args.cards, data_dir)
        peak_rows, peak_problems = drive(address, data_dir, args, 0, args.peak_s, args.peak_s, gateway.pid)
        peak = sum(r[0] for r in peak_rows) / len(peak_rows)
        target = peak * args.fraction
        print(f"peak (closed loop, {args.processes} x {args.threads} threads, {args.peak_s:.0f} s): "
              f"{peak:,.0f} calls/s, {sum(r[3] for r in peak_rows)} errors; soak at "
              f"{args.fraction:.0%}: {target:,.0f} calls/s for {args.duration_s:.0f} s", flush=True)
        rows, problems = drive(address, data_dir, args, target, args.duration_s, args.interval_s, gateway.pid)
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(60)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"{'minute':>7} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'RSS anon':>9} {'RSS file':>9}")
    for i, (rate, p50, p99, errors, (anon, mapped)) in enumerate(rows):
        print(f"{(i + 1) * args.interval_s / 60:>7.1f} {rate:>9,.0f} {p50:>8.2f} {p99:>8.2f} {errors:>7} "
              f"{anon:>9.1f} {mapped:>9.1f}")
    errors = sum(r[3] for r in rows) + sum(r[3] for r in peak_rows)
    half = rows[len(rows) // 2:]
    growth = half[-1][4][0] / half[0][4][0] - 1
    mean_rate = sum(r[0] for r in rows) / len(rows)
    worst_p99 = max(r[2] for r in rows)
    print(f"soak: {mean_rate:,.0f} calls/s on average (target {target:,.0f}), worst p99 of an interval "
          f"{worst_p99:.2f} ms, errors {errors} (goal 0)")
    print(f"anonymous RSS (the heap) {rows[0][4][0]:.1f} MiB after the first interval, {half[0][4][0]:.1f} "
          f"at the half, {rows[-1][4][0]:.1f} at the end: {growth:+.1%} over the second half (goal: no "
          f"growth, within {RSS_GROWTH_MAX:.0%}); file-backed (store pages mapped) {rows[0][4][1]:.1f} -> "
          f"{rows[-1][4][1]:.1f} MiB, as the store grows")
    for problem in (peak_problems + problems)[:20]:
        print(f"  problem: {problem}")
    return 0 if errors == 0 and abs(growth) <= RSS_GROWTH_MAX else 1


if __name__ == "__main__":
    sys.exit(main())
