"""End-to-end load generator: durable purchases/s, p50 and p99 against a real gateway,
beside a bare grpcio echo server with the same message sizes, in the same run.

    python -m benchmarks.loadgen [--processes 2] [--concurrency 8] [--duration-s 10]
                                 [--cards 2000] [--compare-aio] [--batch N] [--workers N]

With --batch N every call is a ForecourtService.AuthorizeBatch of N purchases; with
--stream W every client thread keeps one AuthorizeStream open with W purchases in
flight (the forecourt paths). Both are measured in authorizations/s beside an echo of
the same message sizes; goal for that ratio: >= 0.6. With --observability the gateway
runs without then with metrics and a JSON line per request, alternately, --rounds times
each; the medians are compared (goal: <= 5 % less). The machine's own noise between two
identical runs is of the same order, hence the rounds. With --workers N the gateway runs
as one worker then as N (`serve --workers`), alternately, and the ratio is printed.

Both servers use mutual TLS with the same certificates, as in production. The gateway
and the echo server run as subprocesses on loopback; the clients run in
their own processes (each with --concurrency threads, one call in flight per thread).
On a 2-core machine the Python clients take CPU from the server: compare only within
one run. Goal: gateway / echo >= 0.8 for unary calls.
"""
import argparse
import itertools
import multiprocessing
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc

from cardgate.gateway.cli.channels import open_channel
from cardgate.gateway.cli.demo import clients_dir
from cardgate.gateway.request_ids import new_request_id
from cardgate.gateway.security.pan import luhn_check_digit
from cardgate.gateway.security.pki import Pki
from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2, forecourt_pb2,
                         forecourt_pb2_grpc, issuing_pb2, issuing_pb2_grpc)

GOAL_RATIO = 0.8
GOAL_RATIO_BATCH = 0.6
OBSERVABILITY_OVERHEAD_MAX = 0.05
WARMUP_S = 1.0
STREAM_PREPARED_PER_THREAD = 12_000   # stream requests built before the timed run
ISSUE_CHUNK = 500


def pan_of(i: int) -> str:
    body = "627700" + str(i).zfill(9)
    return body + str(luhn_check_digit(body))


def start(argv, pattern):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    for line in proc.stdout:
        match = re.search(pattern, line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, match.group(1)
    raise RuntimeError(f"{argv[:4]} did not start")


def issue_client_certificates(data_dir):
    pki = Pki(data_dir)
    pki.issue("terminal", "bench-terminal", clients_dir(data_dir), merchant_id="bench",
              outlet_id="bench-1")
    pki.issue("operator", "bench-operator", clients_dir(data_dir))


def prepare_cards(address, cards, data_dir):
    certs = clients_dir(data_dir)
    with open_channel(address, certs, "bench-operator") as op_channel, \
            open_channel(address, certs, "bench-terminal") as channel:
        issuing = issuing_pb2_grpc.IssuingServiceStub(op_channel)
        auth = authorization_pb2_grpc.AuthorizationServiceStub(channel)
        issuing.CreateCardRange(issuing_pb2.CreateCardRangeRequest(
            request_id=new_request_id(), range_id=1, iin_prefix="627700", pan_length=16,
            currency="EUR", name="bench"))
        for start_i in range(0, cards, ISSUE_CHUNK):
            issuing.IssueGiftCards(issuing_pb2.IssueGiftCardsRequest(
                request_id=new_request_id(), range_id=1, cards=[
                    issuing_pb2.GiftCardToIssue(pan=pan_of(i), expiry_yyyymm=209912)
                    for i in range(start_i, min(cards, start_i + ISSUE_CHUNK))]))
        for i in range(cards):
            auth.LoadValue(authorization_pb2.LoadValueRequest(
                request_id=new_request_id(), pan=pan_of(i),
                amount=common_pb2.Money(amount_minor=1_000_000_00, currency="EUR")))


def batch_of(n, cards, rng):
    return forecourt_pb2.AuthorizeBatchRequest(operations=[
        forecourt_pb2.ForecourtOperation(purchase=authorization_pb2.PurchaseRequest(
            request_id=new_request_id(), pan=pan_of(rng.randrange(cards)),
            amount=common_pb2.Money(amount_minor=1, currency="EUR"))) for _ in range(n)])


def sample_messages(batch=0):
    if batch:
        request = batch_of(batch, 1000, random.Random(1))
        response = forecourt_pb2.AuthorizeBatchResponse(results=[
            forecourt_pb2.OperationResult(request_id=o.purchase.request_id,
                                          authorization=sample_messages()[1].authorization)
            for o in request.operations])
        return request, response
    request = authorization_pb2.PurchaseRequest(
        request_id=new_request_id(), pan=pan_of(1),
        amount=common_pb2.Money(amount_minor=1, currency="EUR"))
    response = authorization_pb2.PurchaseResponse(authorization=common_pb2.Authorization(
        result_code=1, approval_code="123456", approved=common_pb2.Money(amount_minor=1, currency="EUR"),
        balance=common_pb2.Balance(currency="EUR", balance_minor=99_999_999, available_minor=99_999_999),
        masked_pan="627700******1234", journal_seq=123456, message="approved"))
    return request, response


def client_process(address, target_kind, cards, concurrency, duration_s, request_bytes, data_dir,
                   batch, stream, spread, out, pan_first=0, pan_stride=1):
    """One client process: `concurrency` threads, each with one call in flight; one
    connection for all, or with `spread` one each (the kernel spreads connections over
    the workers of `serve --workers`). Unary purchases go to the cards
    pan_of(pan_first + k * pan_stride), k < cards."""
    latencies, errors = [], [0]
    lock = threading.Lock()
    channels = [open_channel(address, clients_dir(data_dir), "bench-terminal", own_connection=spread)
                for _ in range(concurrency if spread and target_kind == "gateway" else 1)]
    channel = channels[0]
    if target_kind == "gateway":
        stubs = [authorization_pb2_grpc.AuthorizationServiceStub(c) for c in channels]
        forecourt = forecourt_pb2_grpc.ForecourtServiceStub(channel)
    else:
        echo = channel.unary_unary("/bench.Echo/Call")
        echo_stream = channel.stream_stream("/bench.Echo/Stream")
    payload = b"\x02" * request_bytes

    def stream_request(rng):
        rid = new_request_id()
        return rid, forecourt_pb2.AuthorizeStreamRequest(operations=[
            forecourt_pb2.ForecourtOperation(purchase=authorization_pb2.PurchaseRequest(
                request_id=rid, pan=pan_of(rng.randrange(cards)),
                amount=common_pb2.Money(amount_minor=1, currency="EUR")))])

    def stream_worker(seed):
        rng = random.Random(seed)
        window = threading.BoundedSemaphore(stream)
        sent_at, numbering = {}, itertools.count()
        prepared = prepared_by_seed.get(seed, [])

        def operations():
            while time.monotonic() < stop_at:
                window.acquire()
                if target_kind == "gateway":
                    rid, item = prepared.pop() if prepared else stream_request(rng)
                else:
                    rid, item = next(numbering), payload
                sent_at[rid] = time.monotonic()
                yield item

        mine, order = [], iter(range(1 << 62))
        calls = forecourt.AuthorizeStream(operations(), timeout=duration_s + 30) \
            if target_kind == "gateway" else echo_stream(operations(), timeout=duration_s + 30)
        try:
            for message in calls:
                # The gateway answers what one commit settled in one message; the echo
                # answers every message alone.
                for answer in (message.results if target_kind == "gateway" else (message,)):
                    rid = answer.request_id if target_kind == "gateway" else next(order)
                    started = sent_at.pop(rid)
                    if started >= start_at:
                        mine.append(time.monotonic() - started)
                    if target_kind == "gateway" and answer.WhichOneof("outcome") == "error":
                        with lock:
                            errors[0] += 1
                    window.release()
        except grpc.RpcError:
            with lock:
                errors[0] += 1
        with lock:
            latencies.extend(mine)

    def worker(seed):
        rng = random.Random(seed)
        mine = []
        stub = stubs[seed % len(stubs)] if target_kind == "gateway" else None
        while True:
            now = time.monotonic()
            if now >= stop_at:
                break
            try:
                if target_kind == "gateway" and batch:
                    forecourt.AuthorizeBatch(batch_of(batch, cards, rng), timeout=10)
                elif target_kind == "gateway":
                    stub.Purchase(authorization_pb2.PurchaseRequest(
                        request_id=new_request_id(), pan=pan_of(pan_first + rng.randrange(cards) * pan_stride),
                        amount=common_pb2.Money(amount_minor=1, currency="EUR")), timeout=10)
                else:
                    echo(payload, timeout=10)
            except grpc.RpcError:
                with lock:
                    errors[0] += 1
                continue
            done = time.monotonic()
            if now >= start_at:
                mine.append(done - now)
        with lock:
            latencies.extend(mine)

    seeds = [os.getpid() * 1000 + i for i in range(concurrency)]
    # Stream requests are built before the clock starts, as the echo's payload is: on two
    # cores the clients' own Python work would otherwise be taken from the server measured.
    prepared_by_seed = {seed: [stream_request(random.Random(-seed))
                               for _ in range(STREAM_PREPARED_PER_THREAD)]
                        for seed in seeds} if stream and target_kind == "gateway" else {}
    start_at = time.monotonic() + WARMUP_S
    stop_at = start_at + duration_s
    threads = [threading.Thread(target=stream_worker if stream else worker, args=(seed,))
               for seed in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in channels:
        c.close()
    out.put((latencies, errors[0]))


def drive(address, target_kind, args, request_bytes, data_dir):
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=client_process, args=(
        address, target_kind, args.cards, args.concurrency, args.duration_s, request_bytes,
        data_dir, args.batch, args.stream, args.workers > 1, out,
        getattr(args, "pan_first", 0), getattr(args, "pan_stride", 1)))
        for _ in range(args.processes)]
    for p in procs:
        p.start()
    latencies, errors = [], 0
    for _ in procs:
        try:                    # a client that died (see its traceback above) says nothing
            lat, err = out.get(timeout=args.duration_s + WARMUP_S + 300)
        except queue.Empty:
            raise RuntimeError("a client process did not report") from None
        latencies.extend(lat)
        errors += err
    for p in procs:
        p.join()
    latencies.sort()
    rate = len(latencies) * max(args.batch, 1) / args.duration_s   # authorizations a second
    p50 = latencies[len(latencies) // 2] * 1e3 if latencies else float("nan")
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else float("nan")
    return rate, p50, p99, errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight per process")
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--cards", type=int, default=2000)
    parser.add_argument("--stream", type=int, default=0, metavar="W",
                        help="AuthorizeStream with W purchases in flight per stream (0: off)")
    parser.add_argument("--batch", type=int, default=0,
                        help="purchases per ForecourtService.AuthorizeBatch call (0: unary)")
    parser.add_argument("--observability", action="store_true",
                        help="measure the gateway without metrics and request logs, then with "
                        "both (JSON lines to a file), in the same run")
    parser.add_argument("--log-dir", default=None,
                        help="with --observability: where the request log goes (default: beside "
                        "the store, on the same disk)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="with --observability or --workers: runs of each, alternating (default: 3)")
    parser.add_argument("--workers", type=int, default=1,
                        help="measure `serve --workers 1` then `--workers N`, --rounds times each, "
                        "every client thread on its own connection")
    parser.add_argument("--compare-aio", action="store_true",
                        help="also measure a grpc.aio echo server (the sync/aio choice)")
    args = parser.parse_args(argv)
    request, response = sample_messages(args.batch)
    if args.stream:
        # The echo answers each one-operation message with one one-result message: what
        # the gateway would send if every commit settled a single operation.
        request = forecourt_pb2.AuthorizeStreamRequest(operations=[
            forecourt_pb2.ForecourtOperation(purchase=request)])
        response = forecourt_pb2.AuthorizeStreamResponse(results=[forecourt_pb2.OperationResult(
            request_id=request.operations[0].purchase.request_id,
            authorization=response.authorization)])
    data_dir = tempfile.mkdtemp(prefix="cardgate-loadgen-")
    rows = []
    name = f"cardgate stream, {args.stream} in flight" if args.stream else \
        f"cardgate batch of {args.batch}" if args.batch else "cardgate Purchase (durable)"
    try:
        if args.observability:     # the same load without metrics and request logs, then with
            variants = {"quiet": (["--log-level", "WARNING"], ["--metrics-listen", "off"]),
                        "observed": (["--log-level", "INFO", "--log-format", "json", "--log-file",
                                      f"{args.log_dir or data_dir}/requests{{round}}.log"],
                                     ["--metrics-listen", "127.0.0.1:0"])}
        elif args.workers > 1:     # the same load on one worker, then on --workers
            variants = {f"{n} worker{'s' if n > 1 else ''}": (
                ["--log-level", "WARNING"], ["--metrics-listen", "127.0.0.1:0", "--workers", str(n)])
                for n in (1, args.workers)}
        else:
            variants = {"": (["--log-level", "WARNING"], ["--metrics-listen", "127.0.0.1:0"])}
        rounds = args.rounds if len(variants) > 1 else 1
        runs = {kind: [] for kind in variants}      # alternately, the median of each kept
        for round_ in range(rounds):
            for kind, (global_options, serve_options) in variants.items():
                global_options = [o.replace("{round}", str(round_)) for o in global_options]
                runs[kind].append(drive_gateway(args, f"{data_dir}/{kind.replace(' ', '-') or 'gateway'}{round_}",
                                                global_options, serve_options))
            if rounds > 1:
                print(f"round {round_ + 1}: " + ", ".join(f"{kind} {runs[kind][-1][0]:,.0f}/s" for kind in runs),
                      flush=True)
        for kind, results in runs.items():
            label = f"{name}, {kind}" + (f" (median of {rounds})" if rounds > 1 else "") if kind else name
            rows.append((label,) + sorted(results)[len(results) // 2])
        first = next(iter(variants)).replace(" ", "-") or "gateway"
        certs_dir = f"{data_dir}/{first}0"              # the PKI of the first gateway run
        kinds = ("sync", "aio") if args.compare_aio else ("sync",)
        for kind in kinds:
            echo, address = start([sys.executable, "-m", "benchmarks.echo_server", "--kind", kind,
                                   "--response-bytes", str(response.ByteSize()),
                                   "--data-dir", certs_dir],
                                  r"echo listening on (\S+)")
            try:
                rows.append((f"bare grpcio echo ({kind})",) +
                            drive(address, "echo", args, request.ByteSize(), certs_dir))
            finally:
                echo.send_signal(signal.SIGTERM)
                echo.wait(30)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"clients: {args.processes} processes x {args.concurrency} in flight, "
          f"{args.duration_s:.0f} s; messages {request.ByteSize()} B in, {response.ByteSize()} B out")
    print(f"{'target':<48} {'auths/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, rate, p50, p99, errors in rows:
        print(f"{name:<48} {rate:>11,.0f} {p50:>8.2f} {p99:>8.2f} {errors:>7}")
    gateway_rows = len(variants)
    ratio = rows[gateway_rows - 1][1] / rows[gateway_rows][1]
    goal = GOAL_RATIO_BATCH if args.batch or args.stream else GOAL_RATIO
    print(f"ratio cardgate / bare echo (sync): {ratio:.2f} (goal >= {goal})")
    if args.observability:
        overhead = 1 - rows[1][1] / rows[0][1]
        print(f"cost of metrics and request logs: {overhead:.1%} of throughput, "
              f"p99 {rows[0][3]:.2f} -> {rows[1][3]:.2f} ms (goal <= {OBSERVABILITY_OVERHEAD_MAX:.0%})")
    elif args.workers > 1:
        print(f"{args.workers} workers / 1 worker: {rows[1][1] / rows[0][1]:.2f} "
              f"(every client thread on its own connection in both; {os.cpu_count()} cores here, "
              "shared with the clients)")


def start_gateway(data_dir, global_options=("--log-level", "WARNING"), serve_options=()):
    """`cardgate serve` for a benchmark: no demo, on loopback, the rate and admission limits
    lifted (one terminal certificate carries all the load here). (process, address)."""
    return start([sys.executable, "-m", "cardgate.gateway.cli.main", *global_options,
                  "serve", "--no-demo", "--data-dir", data_dir, *serve_options,
                  "--terminal-rate-per-s", "1000000", "--card-per-minute", "1000000",
                  "--calls-per-certificate", "1000000", "--listen", "127.0.0.1:0"],
                 r"cardgate listening on (\S+),")


def drive_gateway(args, data_dir, global_options, serve_options):
    """(auths/s, p50, p99, errors) of a gateway started with these options."""
    gateway, address = start_gateway(data_dir, global_options, serve_options)
    try:
        issue_client_certificates(data_dir)
        prepare_cards(address, args.cards, data_dir)
        return drive(address, "gateway", args, 0, data_dir)
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)


if __name__ == "__main__":
    sys.exit(main())
