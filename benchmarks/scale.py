"""Scale: does the gateway stay flat as the card base grows? Not run in CI (10 M cards take
about 27 minutes to issue here and 19 GiB of disk, and as much memory to measure warm).

For each card count (the baseline of 100,000 first, then 10,000,000) it:

1. starts `cardgate serve` on a new data directory and issues the cards with IssueCards,
   numbered in order (every card with its encrypted PAN, index entry and issue record,
   as the bureau's path makes them);
2. loads value onto --loaded cards spread evenly over the whole range;
3. then, --rounds times, alternating between the two stores: reads the store file once
   (so its pages are in the page cache, as in a gateway serving for a while; --cold
   does not), starts a gateway on the store (start-up time: process start to
   listening, and to the first answer), asks every paid card's balance once, drives
   durable unary purchases at those cards from the load generator's clients for
   --duration-s (throughput, p50, p99), reads the gateway's RSS (anonymous, and
   file-backed: the LMDB pages it touched) and the LMDB file's size per card.

Then it prints both rows (medians of the rounds) side by side with the changes (goal:
throughput and p99 within 20 % of the baseline, start-up independent of the card count).

    python -m benchmarks.scale [--cards 10000000] [--baseline 100000] [--loaded 20000]
                               [--duration-s 20] [--rounds 3] [--keep DIR]
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import types
import uuid

from benchmarks.loadgen import drive, issue_client_certificates, pan_of, start_gateway
from benchmarks.process_memory import rss_mib
from cardgate.gateway.cli.channels import open_channel
from cardgate.gateway.cli.demo import clients_dir
from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2, issuing_pb2,
                         issuing_pb2_grpc)

GOAL_WITHIN = 0.20
ISSUE_PER_REQUEST = 100_000          # limits.ISSUE_CARDS_PER_BATCH_MAX
FIRST_SERIAL = 1                     # a range numbers its cards from serial 1
BYTES_PER_CARD_MAP = 4_096           # map size to ask for: generous, the file grows as written
WARM_CHUNK_BYTES = 8 << 20


def serve(data_dir, cards):
    """`cardgate serve` on data_dir; (process, address, seconds to the listening line,
    when it was started)."""
    started = time.perf_counter()
    proc, address = start_gateway(data_dir, serve_options=(
        "--metrics-listen", "off", "--map-size-mib", str(max(1024, cards * BYTES_PER_CARD_MAP >> 20))))
    return proc, address, time.perf_counter() - started, started


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)


def issue(address, data_dir, cards, say):
    certs = clients_dir(data_dir)
    with open_channel(address, certs, "bench-operator") as channel:
        issuing = issuing_pb2_grpc.IssuingServiceStub(channel)
        issuing.CreateCardRange(issuing_pb2.CreateCardRangeRequest(
            request_id=str(uuid.uuid4()), range_id=1, iin_prefix="627700", pan_length=16,
            currency="EUR", name="scale", numbering=issuing_pb2.CARD_NUMBERING_SEQUENTIAL))
        started, done = time.perf_counter(), 0
        while done < cards:
            count = min(ISSUE_PER_REQUEST, cards - done)
            last = None
            for last in issuing.IssueCards(issuing_pb2.IssueCardsRequest(
                    request_id=str(uuid.uuid4()), range_id=1, count=count, expiry_yyyymm=209912),
                    timeout=3600):
                pass
            assert last.issued == count, last
            done += count
            if done % 1_000_000 == 0 or done == cards:
                took = time.perf_counter() - started
                say(f"  issued {done:,} cards in {took:,.0f} s ({done / took:,.0f} cards/s)")
    return time.perf_counter() - started


def on_paid_cards(address, data_dir, loaded, stride, call):
    """call(stub, pan) for each of the `loaded` cards the load pays with (every stride-th
    from the first), 16 at a time."""
    with open_channel(address, clients_dir(data_dir), "bench-terminal") as channel:
        auth = authorization_pb2_grpc.AuthorizationServiceStub(channel)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: call(auth, pan_of(FIRST_SERIAL + k * stride)), range(loaded)))


def load(auth, pan):
    """Value onto a card the load pays with."""
    answer = auth.LoadValue(authorization_pb2.LoadValueRequest(
        request_id=str(uuid.uuid4()), pan=pan,
        amount=common_pb2.Money(amount_minor=1_000_000_00, currency="EUR")), timeout=30)
    assert answer.authorization.result_code == common_pb2.RESULT_CODE_APPROVED, answer


def touch(auth, pan):
    """A balance enquiry before the clock starts: the pages a serving gateway has touched
    already (on a machine whose page cache cannot hold the whole store, reading the file
    once does not keep them all)."""
    auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan), timeout=60)


def first_answer(address, data_dir):
    with open_channel(address, clients_dir(data_dir), "bench-terminal") as channel:
        authorization_pb2_grpc.AuthorizationServiceStub(channel).GetBalance(
            authorization_pb2.GetBalanceRequest(pan=pan_of(FIRST_SERIAL)), timeout=60, wait_for_ready=True)


def build(cards, args, root, say) -> dict:
    """A store of `cards` cards in root/cards-N with --loaded of them given value; kept
    there (with built.json) so that a later run with the same --keep measures it again."""
    data_dir = os.path.join(root, f"cards-{cards}")
    marker = os.path.join(data_dir, "built.json")
    if os.path.exists(marker):
        built = json.loads(open(marker).read())
        if built["loaded"] == args.loaded:
            say(f"{cards:,} cards: the store built earlier in {data_dir}")
            return built
    shutil.rmtree(data_dir, ignore_errors=True)
    say(f"{cards:,} cards: building the store in {data_dir}")
    proc, address, _, _ = serve(data_dir, cards)
    try:
        issue_client_certificates(data_dir)
        issue_s = issue(address, data_dir, cards, say)
        stride = cards // args.loaded
        on_paid_cards(address, data_dir, args.loaded, stride, load)
    finally:
        stop(proc)
    built = dict(cards=cards, data_dir=data_dir, issue_s=issue_s, loaded=args.loaded, stride=stride,
                 file_bytes=os.stat(os.path.join(data_dir, "ledger", "data.mdb")).st_size)
    with open(marker, "w") as out:
        out.write(json.dumps(built))
    return built


def warm(data_dir) -> float:
    """Read the store file once, so that its pages are in the page cache as they are in a
    gateway that has been serving a while (what `vmtouch -t` does); seconds taken."""
    started = time.perf_counter()
    with open(os.path.join(data_dir, "ledger", "data.mdb"), "rb", buffering=0) as store:
        chunk = bytearray(WARM_CHUNK_BYTES)
        while store.readinto(chunk):
            pass
    return time.perf_counter() - started


def measure(built, args, say) -> dict:
    """Start a gateway on the built store, drive purchases at its loaded cards, stop it."""
    cards, data_dir = built["cards"], built["data_dir"]
    warm_s = warm(data_dir) if not args.cold else 0.0
    proc, address, listening_s, started = serve(data_dir, cards)
    try:
        first_answer(address, data_dir)
        answering_s = time.perf_counter() - started
        touched = time.perf_counter()
        if not args.cold:
            on_paid_cards(address, data_dir, args.loaded, built["stride"], touch)
        touch_s = time.perf_counter() - touched
        clients = types.SimpleNamespace(cards=args.loaded, concurrency=args.concurrency,
                                        processes=args.processes, duration_s=args.duration_s,
                                        batch=0, stream=0, workers=1,
                                        pan_first=FIRST_SERIAL, pan_stride=built["stride"])
        rate, p50, p99, errors = drive(address, "gateway", clients, 0, data_dir)
        rss = rss_mib(proc.pid)
    finally:
        stop(proc)
    row = dict(cards=cards, issue_s=built["issue_s"], warm_s=warm_s, touch_s=touch_s,
               listening_s=listening_s, answering_s=answering_s,
               rate=rate, p50=p50, p99=p99, errors=errors, rss=rss, file_bytes=built["file_bytes"])
    say(f"  {cards:,} cards: {rate:,.0f} purchases/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, {errors} errors; "
        f"start-up {listening_s:.2f} s to listening, {answering_s:.2f} s to the first answer "
        f"(the store read into the page cache before: {warm_s:.1f} s; the paid cards' first "
        f"balance enquiry: {touch_s:.1f} s); RSS {rss['VmRSS']:,.0f} MiB ({rss['RssAnon']:,.0f} anonymous, {rss['RssFile']:,.0f} file); "
        f"store as built {row['file_bytes'] / 2**20:,.0f} MiB, {row['file_bytes'] / cards:,.0f} bytes a card")
    return row


def median_row(rows) -> dict:
    """The median of each figure over the rounds (RSS: the largest)."""
    row = dict(rows[0])
    for key in ("listening_s", "answering_s", "rate", "p50", "p99"):
        row[key] = sorted(r[key] for r in rows)[len(rows) // 2]
    row["errors"] = sum(r["errors"] for r in rows)
    row["rss"] = max((r["rss"] for r in rows), key=lambda rss: rss["VmRSS"])
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=10_000_000)
    parser.add_argument("--baseline", type=int, default=100_000)
    parser.add_argument("--loaded", type=int, default=20_000,
                        help="cards given value and paid with, spread over the whole range")
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight per process")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each store, alternating")
    parser.add_argument("--cold", action="store_true", help="do not read the store into the page "
                        "cache before each measurement (the first minutes after a machine's start)")
    parser.add_argument("--keep", metavar="DIR", help="build the stores in DIR and keep them; a "
                        "later run with the same DIR measures them again without building")
    args = parser.parse_args(argv)
    root = args.keep or tempfile.mkdtemp(prefix="cardgate-scale-")
    os.makedirs(root, exist_ok=True)
    say = lambda text: print(text, flush=True)  # noqa: E731
    try:
        stores = [build(n, args, root, say) for n in (args.baseline, args.cards)]
        measured = {n: [] for n in (args.baseline, args.cards)}
        for round_ in range(args.rounds):          # alternately: the machine's noise hits both
            for built in stores:
                measured[built["cards"]].append(measure(built, args, say))
        base, big = (median_row(measured[n]) for n in (args.baseline, args.cards))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nclients: {args.processes} processes x {args.concurrency} in flight, {args.duration_s:.0f} s "
          f"of durable unary purchases at {args.loaded:,} cards spread over the range; {os.cpu_count()} cores; "
          f"medians of {args.rounds} rounds, alternating (RSS: the largest)")
    print(f"{'cards':>12} {'issued in':>10} {'purch/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'listening':>9} {'answering':>9} {'RSS MiB':>8} {'anon':>6} {'file':>6} {'B/card':>7}")
    for r in (base, big):
        print(f"{r['cards']:>12,} {r['issue_s']:>9,.0f}s {r['rate']:>9,.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} "
              f"{r['errors']:>6} {r['listening_s']:>8.2f}s {r['answering_s']:>8.2f}s {r['rss']['VmRSS']:>8,.0f} "
              f"{r['rss']['RssAnon']:>6,.0f} {r['rss']['RssFile']:>6,.0f} {r['file_bytes'] / r['cards']:>7,.0f}")
    rate_change = big["rate"] / base["rate"] - 1
    p99_change = big["p99"] / base["p99"] - 1
    print(f"throughput at {args.cards:,} vs {args.baseline:,} cards: {rate_change:+.1%}; "
          f"p99 {p99_change:+.1%} (goal: within {GOAL_WITHIN:.0%} each)")
    print(f"start-up to the first answer: {big['answering_s']:.2f} s vs {base['answering_s']:.2f} s "
          "(goal: independent of the card count)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
