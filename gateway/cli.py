"""The ``cardgate`` command: serve, audit, and small clients for trying it by hand."""
import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading

from . import limits
from .request_ids import new_request_id
from .store import DATA_DIR_DEFAULT, DATA_DIR_ENV, default_data_dir

TARGET_ENV = "CARDGATE_TARGET"
TARGET_DEFAULT = "127.0.0.1:50051"


def _is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args) -> int:
    from .demo import ensure_demo
    from .server import Gateway

    if not _is_loopback(args.listen):
        print(f"cardgate: refusing to listen on {args.listen}: this build serves without TLS, "
              "which is only allowed on a loopback address (127.0.0.1, ::1, localhost)",
              file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        gateway = Gateway(args.data_dir, args.listen,
                          map_size_bytes=args.map_size_mib * 1024 * 1024).start()
    except OSError as exc:
        print(f"cardgate: {exc}", file=sys.stderr)
        return 2
    created = None if args.no_demo else ensure_demo(gateway.operations, args.data_dir,
                                                    gateway.operations.clock)
    print(f"cardgate listening on {gateway.address}, data in {args.data_dir}", flush=True)
    if created:
        print("Created the demo program: card range 1, EUR gift cards:")
        for i, masked in enumerate(created, 1):
            print(f"  demo card {i}: {masked}")
        print(f"Full numbers are in {args.data_dir}/demo-cards.txt (mode 0600).")
    print("Try, in another terminal:\n"
          "  cardgate balance --demo-card 1\n"
          "  cardgate pay --demo-card 1 --amount 12.50\n"
          f"  grpcurl -plaintext {gateway.address} list", flush=True)
    stop.wait()
    print("cardgate: stopping", flush=True)
    gateway.stop()
    return 0


def cmd_audit(args) -> int:
    from .audit import audit

    try:
        violations, counts = audit(args.data_dir)
    except FileNotFoundError as exc:
        print(f"cardgate audit: {exc}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
    if violations:
        print(f"AUDIT FAILED: {len(violations)} violation(s) in {args.data_dir} ({summary})")
        for v in violations:
            print(f"  - {v}")
        return 1
    print(f"audit passed: {args.data_dir} ({summary})")
    return 0


def _pan_from_args(args) -> str:
    if args.pan:
        return args.pan
    from .demo import read_demo_pans

    pans = read_demo_pans(args.data_dir)
    if not 1 <= args.demo_card <= len(pans):
        raise SystemExit(f"cardgate: --demo-card must be 1 to {len(pans)}")
    return pans[args.demo_card - 1]


def cmd_client(args) -> int:
    from . import client

    return client.run(args, _pan_from_args(args) if args.command != "reverse" else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardgate", description="Processing host for closed-loop card programs.")
    parser.add_argument("--log-level", default=os.environ.get("CARDGATE_LOG_LEVEL", "INFO"),
                        help="DEBUG, INFO, WARNING or ERROR (default: INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_data_dir(p):
        p.add_argument("--data-dir", default=str(default_data_dir()),
                       help=f"data directory (default: ${DATA_DIR_ENV} or ./{DATA_DIR_DEFAULT})")
        return p

    serve = with_data_dir(sub.add_parser("serve", help="run the gateway (creates the demo on first start)"))
    serve.add_argument("--listen", default=TARGET_DEFAULT,
                       help=f"address to listen on (default: {TARGET_DEFAULT}; loopback only)")
    serve.add_argument("--map-size-mib", type=int, default=limits.MAP_SIZE_BYTES_DEFAULT >> 20,
                       help="largest size the store may grow to, in MiB (default: %(default)s)")
    serve.add_argument("--no-demo", action="store_true", help="do not create the demo program")
    serve.set_defaults(func=cmd_serve)

    audit = with_data_dir(sub.add_parser("audit", help="check the ledger invariants of a data directory"))
    audit.set_defaults(func=cmd_audit)

    def client_parser(name, help_text, amount=True, card=True, original=False):
        p = with_data_dir(sub.add_parser(name, help=help_text))
        p.add_argument("--target", default=os.environ.get(TARGET_ENV, TARGET_DEFAULT),
                       help=f"gateway address (default: ${TARGET_ENV} or {TARGET_DEFAULT})")
        if card:
            which = p.add_mutually_exclusive_group(required=True)
            which.add_argument("--pan", help="card number")
            which.add_argument("--demo-card", type=int, metavar="N",
                               help="demo card N from the data directory's demo-cards.txt")
        if amount:
            p.add_argument("--amount", required=True, help="amount in units, e.g. 12.50")
            p.add_argument("--currency", default="EUR", help="ISO 4217 code (default: EUR)")
        if original:
            p.add_argument("--original-request-id", required=True,
                           help="request id of the request to refund or reverse")
        if name != "balance":
            p.add_argument("--request-id", default=None,
                           help="UUID of this request (default: a new time-ordered one); reuse it to retry")
        p.set_defaults(func=cmd_client)
        return p

    client_parser("balance", "show a card's balance", amount=False)
    client_parser("load", "load value onto a card (activates a new gift card)")
    client_parser("pay", "pay with a card")
    client_parser("refund", "refund part or all of an earlier payment", original=True)
    client_parser("reverse", "undo an earlier request by its request id", amount=False,
                  card=False, original=True)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "request_id", "unset") is None:
        args.request_id = new_request_id()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
