"""The ``cardgate`` command: serve, audit, and small clients for trying it by hand."""
import argparse
import os
import pathlib
import signal
import sys
import threading
from importlib.metadata import entry_points

from cardgate.gateway import limits
from cardgate.gateway.api.server import Gateway, InsecureRefused
from cardgate.gateway.cli import client, loyalty as loyalty_cli, office as office_cli, rpc_verbs
from cardgate.gateway.cli.times import utc_time
from cardgate.gateway.cli.demo import (clients_dir, ensure_demo, ensure_demo_certificates,
                                       read_demo_pans)
from cardgate.gateway.office import webhooks
from cardgate.gateway.ops import admin_log, logs, top
from cardgate.gateway.ops.workers import (Supervisor, WorkersFailed, die_with_parent,
                                          metrics_listen_of, tell_ready, worker_argv)
from cardgate.gateway.request_ids import new_request_id
from cardgate.gateway.security import keys_admin
from cardgate.gateway.security.datakeys import KeyError_
from cardgate.gateway.security.kek import KekError, of_data_dir as kek_of_data_dir
from cardgate.gateway.security.pin_blocks import PinKeyError, TerminalPinKeys, check_value
from cardgate.gateway.security.pki import CLIENT_VALID_DAYS_DEFAULT, Pki, PkiError, load_certificate
from cardgate.gateway.store import retention
from cardgate.gateway.store.audit import audit
from cardgate.gateway.store.backup import BackupError, backup, restore
from cardgate.gateway.store.files import write_file
from cardgate.gateway.store.store import (DATA_DIR_DEFAULT, DATA_DIR_ENV, Store,
                                          StoreFormatError, default_data_dir)

TARGET_ENV = "CARDGATE_TARGET"
TARGET_DEFAULT = "127.0.0.1:50051"


METRICS_LISTEN_DEFAULT = "127.0.0.1:9464"


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _wait_until(stop: threading.Event):
    """Wait for SIGINT/SIGTERM. With a timeout: a signal the kernel hands to another
    thread (the writer, gRPC's) does not wake a main thread blocked without one, and
    Python runs its handler only in the main thread."""
    while not stop.wait(1.0):
        pass


def _gateway_options(args) -> dict:
    return dict(tls=not args.insecure, map_size_bytes=args.map_size_mib * 1024 * 1024,
                terminal_rate_per_s=args.terminal_rate_per_s,
                calls_per_certificate=args.calls_per_certificate,
                card_per_minute_max=args.card_per_minute, hold_timeout_s=args.hold_timeout_s,
                replicate=args.replicate.split(",") if args.replicate else None,
                node_id=args.node_id, lease_ttl_s=args.lease_ttl_s, group=args.group,
                stream_window=(args.stream_max_age_days * 86400, args.stream_max_gib << 30),
                retention_windows=retention_windows(args.retention),
                iso8583_listen=args.iso8583_listen, iso8583_profile=args.iso8583_profile)


def retention_windows(spec: str):
    """--retention's windows: None for 'off' (the store keeps everything)."""
    return None if spec.strip() == "off" else retention.Windows.parse(spec)


def _whole_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def _retention_spec(spec: str) -> str:
    try:
        retention.Windows.parse(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def _ensure_demo(args, pki, operations) -> tuple:
    """(demo client certificates made, masked demo cards made) unless --no-demo."""
    certs = [] if args.no_demo or args.insecure else ensure_demo_certificates(pki, args.data_dir)
    created = None if args.no_demo else ensure_demo(operations, args.data_dir, operations.clock)
    return certs, created


def cmd_serve(args) -> int:
    if args.worker_index is not None:
        return _serve_as_worker(args)
    if args.workers < 1:
        print("cardgate: --workers must be 1 or more", file=sys.stderr)
        return 2
    if args.replicate and (args.workers > 1 or not args.no_demo):
        print("cardgate: --replicate runs one process per node, without the demo (--no-demo); "
              "start every node from a copy of one data directory", file=sys.stderr)
        return 2
    if args.workers > 1:
        return _serve_workers(args)
    stop = _stop_on_signals()
    try:
        gateway = Gateway(args.data_dir, args.listen, **_gateway_options(args),
                          metrics_listen=metrics_listen_of(args.metrics_listen, 0)).start()
    except (OSError, InsecureRefused) as exc:
        print(f"cardgate: {exc}", file=sys.stderr)
        return 2
    certs, created = _ensure_demo(args, gateway.pki, gateway.operations)
    metrics = [gateway.metrics_server.address] if gateway.metrics_server is not None else []
    _announce(args, gateway.address, metrics, gateway.pki, gateway.pki_created, certs, created)
    _wait_until(stop)
    print("cardgate: stopping", flush=True)
    gateway.stop()
    return 0


def _serve_workers(args) -> int:
    """The supervisor of `serve --workers N` (workers.py): prepares the data directory,
    starts the workers, restarts any that ends, stops them all on SIGTERM/SIGINT."""
    stop = _stop_on_signals()
    supervisor = Supervisor(args.workers, worker_argv(args), args.listen, stop)
    try:
        supervisor.hold()
        # Made, never started (it binds nothing): the data directory as a gateway opens
        # it, and the demo written through its writer before the workers open it too.
        gateway = Gateway(args.data_dir, args.listen, **_gateway_options(args))
    except (OSError, InsecureRefused) as exc:        # WorkersFailed is an OSError
        print(f"cardgate: {exc}", file=sys.stderr)
        return 2
    gateway.writer.start()
    try:
        certs, created = _ensure_demo(args, gateway.pki, gateway.operations)
    finally:
        gateway.writer.stop()
        gateway.store.close()
    try:
        supervisor.start()
    except WorkersFailed as exc:
        print(f"cardgate: {exc}", file=sys.stderr)
        return 2
    _announce(args, supervisor.address, [w.metrics for w in supervisor.workers if w.metrics],
              gateway.pki, gateway.pki_created, certs, created,
              workers=", ".join(str(w.proc.pid) for w in supervisor.workers))
    code = supervisor.run()
    print("cardgate: stopped", flush=True)
    return code


def _serve_as_worker(args) -> int:
    """One worker of `serve --workers N`, started by the supervisor (workers.py)."""
    die_with_parent()
    stop = _stop_on_signals()
    try:
        gateway = Gateway(args.data_dir, args.listen, **_gateway_options(args), reuse_port=True,
                          metrics_listen=metrics_listen_of(args.metrics_listen, args.worker_index)).start()
    except (OSError, InsecureRefused) as exc:
        print(f"cardgate worker {args.worker_index}: {exc}", file=sys.stderr)
        return 2
    tell_ready(args.ready_fd, args.worker_index,
               gateway.metrics_server.address if gateway.metrics_server is not None else None)
    _wait_until(stop)
    gateway.stop()
    return 0


def _announce(args, address, metrics, pki, pki_created, certs, created, workers=None):
    """What `serve` prints once it answers: where, how to watch it, and the demo."""
    mode = "WITHOUT TLS (loopback development mode)" if args.insecure else "mutual TLS"
    print(f"cardgate listening on {address}, {mode}, data in {args.data_dir}"
          + (f", {args.workers} workers (pids {workers})" if workers else ""), flush=True)
    if metrics:
        pages = ", ".join(f"http://{m}/metrics" for m in metrics)
        print(f"Metrics for Prometheus on {pages} ({'one per worker; ' if workers else ''}"
              f"watch them: cardgate top --metrics {','.join(metrics)})", flush=True)
    if pki_created:
        print(f"Created the gateway's CA and server certificate in {pki.dir}.")
    if certs:
        print(f"Created demo client certificates in {clients_dir(args.data_dir)}: {', '.join(certs)}.")
    if created:
        print("Created the demo program: card range 1 (EUR): gift cards, and a fleet card (the last):")
        for i, masked in enumerate(created, 1):
            print(f"  demo card {i}: {masked}")
        print(f"Full numbers are in {args.data_dir}/demo-cards.wrapped, wrapped by the KEK "
              "like every key; --demo-card N reads them.")
    insecure = " --insecure" if args.insecure else ""
    grpcurl = f"grpcurl -plaintext {address} list" if args.insecure else (
        "cardgate pki issue --role operator --name me --out certs && grpcurl -cacert certs/ca.crt "
        f"-cert certs/me.crt -key certs/me.key {address} list")
    print("Try, in another terminal:\n"
          f"  cardgate balance --demo-card 1{insecure}\n"
          f"  cardgate pay --demo-card 1 --amount 12.50{insecure}\n"
          f"  {grpcurl}", flush=True)


def cmd_top(args) -> int:
    return top.run(args.metrics, args.interval, args.once)


def cmd_backup(args) -> int:
    try:
        if args.command == "backup":
            made = backup(args.data_dir, args.dest)
            print(f"backup of {args.data_dir} in {args.dest}: journal up to entry "
                  f"{made['last_journal_seq']}, {made['store_bytes']:,} bytes "
                  f"(the store: {made['source_bytes']:,}); it holds the data keys: keep it as safe")
            return 0
        made, violations, counts = restore(args.backup, args.data_dir)
    except (BackupError, StoreFormatError, OSError) as exc:
        print(f"cardgate {args.command}: {exc}", file=sys.stderr)
        return 2
    print(f"restored {args.data_dir} from the backup made {made['made_at']} (journal up to entry "
          f"{made['last_journal_seq']})")
    if violations:
        print(f"AUDIT FAILED: {len(violations)} violation(s)")
        for v in violations:
            print(f"  - {v}")
        return 1
    print("audit passed: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))
    return 0


def _count_text(name: str, value) -> str:
    """'12 journal entries', or for a count per currency 'owing minor: EUR 5000'."""
    name = name.replace("_", " ")
    if isinstance(value, dict):
        return f"{name}: " + (" ".join(f"{c} {n}" for c, n in value.items()) or "none")
    return f"{value} {name}"


def cmd_audit(args) -> int:
    try:
        violations, counts = audit(args.data_dir)
    except (FileNotFoundError, StoreFormatError) as exc:
        print(f"cardgate audit: {exc}", file=sys.stderr)
        return 2
    summary = ", ".join(_count_text(name, value) for name, value in counts.items())
    if violations:
        print(f"AUDIT FAILED: {len(violations)} violation(s) in {args.data_dir} ({summary})")
        for v in violations:
            print(f"  - {v}")
        return 1
    print(f"audit passed: {args.data_dir} ({summary})")
    return 0


def cmd_admin_log(args) -> int:
    try:
        store = Store(args.data_dir, readonly=True)
    except (FileNotFoundError, StoreFormatError) as exc:
        print(f"cardgate admin-log: {exc}", file=sys.stderr)
        return 2
    try:
        since = int(utc_time(args.since).timestamp()) if args.since else 0
        until = int(utc_time(args.until).timestamp()) if args.until else None
        actor = int(args.actor, 16) & 0xFFFF_FFFF if args.actor else None
        rows = admin_log.lines(store, args.data_dir, since, until, actor, args.limit)
    finally:
        store.close()
    for at, code, who, op, result, card, request_id in rows:
        print(f"{at:%Y-%m-%d %H:%M:%S}Z {code:08x} {who}: {op} {result}"
              + (f" card {card}" if card else "") + f" request {request_id}")
    if not rows:
        print("no operator or bureau acts in that period")
    return 0


def _pan_from_args(args) -> str:
    if args.pan:
        return args.pan
    pans = read_demo_pans(args.data_dir)
    if not 1 <= args.demo_card <= len(pans):
        raise SystemExit(f"cardgate: --demo-card must be 1 to {len(pans)}")
    return pans[args.demo_card - 1]


def cmd_client(args) -> int:
    return client.run(args, _pan_from_args(args) if getattr(args, "pan", None) is not None or
                      getattr(args, "demo_card", None) is not None else None)


def cmd_pki(args) -> int:
    pki = Pki(args.data_dir)
    if not pki.ca_cert_path.exists():
        print(f"cardgate pki: no CA in {pki.dir}; start 'cardgate serve' once to create it",
              file=sys.stderr)
        return 2
    if args.pki_command == "issue":
        out = args.out or clients_dir(args.data_dir)
        try:
            identity = pki.issue(args.role, args.name, out, merchant_id=args.merchant or "",
                                 outlet_id=args.outlet or "", valid_days=args.days,
                                 ranges=[int(r) for r in args.ranges.split(",")] if args.ranges else (),
                                 partner_id=args.partner or 0)
        except (PkiError, ValueError) as exc:
            print(f"cardgate pki issue: {exc}", file=sys.stderr)
            return 2
        print(f"issued {identity.describe()}: {out}/{args.name}.crt and .key (0600), {out}/ca.crt")
        return 0
    if args.pki_command == "renew":
        old = load_certificate(args.cert)
        out = args.out or str(pathlib.Path(args.cert).parent)
        try:
            identity = pki.renew(old, out, valid_days=args.days)
        except PkiError as exc:
            print(f"cardgate pki renew: {exc}", file=sys.stderr)
            return 2
        if args.revoke_old:
            pki.revoke(old.serial_number)
        print(f"renewed {identity.describe()}: {out}/{identity.name}.crt and .key (0600)"
              + (f"; certificate {old.serial_number:x} revoked" if args.revoke_old else ""))
        return 0
    if args.pki_command == "revoke":
        serial = load_certificate(args.cert).serial_number if args.cert else int(args.serial, 16)
        pki.revoke(serial)
        print(f"revoked certificate {serial:x}; a running gateway refuses it from its next call")
        return 0
    import json
    revoked = pki.revoked_serials()
    if pki.issued_path.exists():
        for line in pki.issued_path.read_text().splitlines():
            cert = json.loads(line)
            state = "REVOKED" if int(cert["serial"], 16) in revoked else "valid until " + cert["not_after"][:10]
            where = f" {cert['merchant_id']}/{cert['outlet_id']}" if cert["role"] == "terminal" else ""
            print(f"{cert['serial']:>40} {cert['role']:<9}{where} {cert['name']}: {state}")
    return 0


def cmd_keys(args) -> int:
    try:
        if args.keys_command == "rotate":
            active, done, left = keys_admin.rotate(args.data_dir, max_records=args.max_records)
            print(f"active data key {active}: re-encrypted {done} card numbers and holder names, "
                  f"{left} left")
            if left:
                print("run 'cardgate keys rotate' again to finish")
            return 0
        if args.keys_command == "verify":
            counts, problems = keys_admin.verify(args.data_dir)
            summary = ", ".join(f"{n} under {k}" for k, n in sorted(counts.items())) or "none stored"
            print(f"card numbers and holder names: {summary}")
            for problem in problems:
                print(f"  - {problem}")
            return 1 if problems else 0
        if args.keys_command == "rewrap":
            where, files = keys_admin.rewrap(args.data_dir, args.to_kek_file, args.to_pkcs11_key)
            print(f"wrapped {len(files)} keys under {where}: {', '.join(files)}; start the "
                  "gateway with that KEK from now on, then destroy the old one")
            return 0
        if args.keys_command == "terminal-pin-key":
            return terminal_pin_key(args)
        keys_admin.retire(args.data_dir, args.key_id)
        print(f"retired data key {args.key_id}")
        return 0
    except (KeyError_, StoreFormatError, KekError, PinKeyError) as exc:
        print(f"cardgate keys: {exc}", file=sys.stderr)
        return 2


def terminal_pin_key(args) -> int:
    """Make (--out) or load (--key-file) a terminal's PIN key into the data directory's
    custody; the key itself only ever goes to the file named, for the terminal."""
    if args.key_file:
        try:
            key = bytes.fromhex(pathlib.Path(args.key_file).read_text().strip())
        except ValueError:
            raise PinKeyError(f"{args.key_file} does not hold a key in hexadecimal") from None
    else:
        key = None
    keys = TerminalPinKeys(args.data_dir, kek_of_data_dir(args.data_dir))
    key = keys.put(args.merchant, args.terminal, args.kind, key)
    if args.out:
        write_file(args.out, key.hex().upper().encode() + b"\n", private=True)
    print(f"terminal {args.merchant}/{args.terminal}: {args.kind} PIN key, check value "
          f"{check_value(args.kind, key)}" + (f", written to {args.out} for loading into "
                                             "the terminal (then destroy that file)"
                                             if args.out else ""))
    return 0


def cmd_rpc_verb(args) -> int:
    pan = _pan_from_args(args) if getattr(args, "pan", None) is not None or \
        getattr(args, "demo_card", None) is not None else None
    channel = client.channel_of(args)
    if channel is None:
        return 2
    with channel:
        return rpc_verbs.run(args, channel, pan)


def cmd_webhooks(args) -> int:
    try:
        config = webhooks.Config.load(args.config)
    except webhooks.ConfigError as exc:
        print(f"cardgate: {exc}", file=sys.stderr)
        return 2
    channel = client.channel_of(args)
    if channel is None:
        return 2
    stop = _stop_on_signals()
    relay = threading.Thread(target=webhooks.run, args=(config, channel, stop), name="webhooks")
    relay.start()
    print(f"relaying events to {', '.join(e.name for e in config.endpoints)}; state in "
          f"{config.state_dir}", flush=True)
    _wait_until_done(stop, relay)
    channel.close()
    return 0


def _wait_until_done(stop: threading.Event, worker: threading.Thread):
    """_wait_until a signal, then let the worker finish."""
    while worker.is_alive() and not stop.wait(1.0):
        pass
    stop.set()
    worker.join()


def add_connection_options(p, identity: str):
    """How a client command reaches the gateway (client.channel_of opens it)."""
    p.add_argument("--target", default=os.environ.get(TARGET_ENV, TARGET_DEFAULT),
                   help="gateway address, or the nodes of a replicated group comma-separated "
                   "(calls go to whichever writes; one answered UNAVAILABLE is sent to the next) "
                   f"(default: ${TARGET_ENV} or {TARGET_DEFAULT})")
    p.add_argument("--cert-dir", help="folder with the client certificate (default: "
                   "DATA_DIR/pki/clients, where the demo puts its own)")
    p.add_argument("--as", dest="identity", default=identity,
                   help="client certificate NAME to use: NAME.crt and NAME.key "
                   f"(default: {identity})")
    p.add_argument("--insecure", action="store_true",
                   help="talk to a gateway in loopback development mode, without TLS")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardgate", description="Processing host for closed-loop card programs.")
    parser.add_argument("--log-level", default=os.environ.get("CARDGATE_LOG_LEVEL", "INFO"),
                        help="DEBUG, INFO, WARNING or ERROR (default: $CARDGATE_LOG_LEVEL or INFO; "
                        "INFO logs a line per request answered)")
    parser.add_argument("--log-format", choices=("text", "json"),
                        default=os.environ.get("CARDGATE_LOG_FORMAT", "text"),
                        help="text lines, or JSON lines for log shippers (default: $CARDGATE_LOG_FORMAT or text)")
    parser.add_argument("--log-file", default=os.environ.get("CARDGATE_LOG_FILE"),
                        help="append logs to this file (default: $CARDGATE_LOG_FILE or stderr)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_data_dir(p):
        p.add_argument("--data-dir", default=str(default_data_dir()),
                       help=f"data directory (default: ${DATA_DIR_ENV} or ./{DATA_DIR_DEFAULT})")
        return p

    serve = with_data_dir(sub.add_parser("serve", help="run the gateway (creates the demo on first start)"))
    serve.add_argument("--listen", default=TARGET_DEFAULT,
                       help=f"address to listen on (default: {TARGET_DEFAULT}); any address with "
                       "mutual TLS (the default), loopback only with --insecure")
    serve.add_argument("--map-size-mib", type=int, default=limits.MAP_SIZE_BYTES_DEFAULT >> 20,
                       help="largest size the store may grow to, in MiB (default: %(default)s)")
    serve.add_argument("--no-demo", action="store_true",
                       help="do not create the demo program and demo client certificates")
    serve.add_argument("--insecure", action="store_true",
                       help="development mode without TLS; refused on any non-loopback address")
    serve.add_argument("--terminal-rate-per-s", type=float, default=limits.TERMINAL_REQUESTS_PER_S_MAX,
                       help="requests a second one terminal certificate may send (default: %(default)s)")
    serve.add_argument("--calls-per-certificate", type=int, default=limits.CALLS_PER_CERTIFICATE_MAX,
                       help="calls one client certificate may have open at once; more are "
                       "refused RESOURCE_EXHAUSTED before any work (default: %(default)s)")
    serve.add_argument("--card-per-minute", type=int, default=limits.CARD_AUTHORIZATIONS_PER_MINUTE_MAX,
                       help="money requests one card may make a minute (default: %(default)s)")
    serve.add_argument("--metrics-listen", default=os.environ.get("CARDGATE_METRICS_LISTEN", METRICS_LISTEN_DEFAULT),
                       help="address of the Prometheus /metrics endpoint, or 'off'; plain HTTP "
                       "on loopback, elsewhere HTTPS for operator certificates of the gateway's CA "
                       f"only (default: $CARDGATE_METRICS_LISTEN or {METRICS_LISTEN_DEFAULT})")
    serve.add_argument("--hold-timeout-s", type=int, default=limits.HOLD_TIMEOUT_S_DEFAULT,
                       help="seconds before an open pre-authorization is released "
                       "(default: %(default)s)")
    serve.add_argument("--iso8583-listen", metavar="HOST:PORT",
                       help="also take ISO 8583 from terminals here (docs/iso8583.md): mutual "
                       "TLS with terminal certificates of the gateway's CA, 2-byte length "
                       "framing (default: off)")
    serve.add_argument("--iso8583-profile", choices=("1987", "1993"), default="1987",
                       help="the ISO 8583 profile of --iso8583-listen (default: %(default)s)")
    serve.add_argument("--retention", type=_retention_spec, default="",
                       metavar="KIND=DAYS,...|off",
                       help="how long the store keeps what it may forget: idempotency records "
                       "(requests: a retry with an older request id is a new request), reversal "
                       "tombstones, ended holds, used-up or expired lots, flagged sales (reviews); "
                       "older ones are pruned in small batches, on every node of a replicated "
                       "group alike; the journal, cards and accounts stay. 'off': keep "
                       f"everything (default: {retention.Windows().describe()})")
    serve.add_argument("--replicate", metavar="NATS_URLS",
                       help="a node of a replicated group: the NATS JetStream servers (comma "
                       "separated) whose stream holds every committed batch; the node follows "
                       "it and takes over as primary when the primary's lease lapses")
    serve.add_argument("--node-id", help="this node's name in the group (default: the host name)")
    serve.add_argument("--group", default="CARDGATE",
                       help="the replicated group's name: its stream and lease on the NATS "
                       "servers (default: %(default)s; one per group, e.g. per shard)")
    serve.add_argument("--stream-max-age-days", type=_whole_number, default=7,
                       help="how long the group's stream keeps a batch (default: %(default)s); "
                       "a node started from a backup older than this cannot catch up")
    serve.add_argument("--stream-max-gib", type=_whole_number, default=8,
                       help="the most the group's stream holds, in GiB (default: %(default)s)")
    serve.add_argument("--lease-ttl-s", type=float, default=None,
                       help="how long the primary's lease lasts without renewal (default: 3)")
    serve.add_argument("--workers", type=int, default=1,
                       help="gateway processes sharing the port (SO_REUSEPORT) and the store, "
                       "each with its own writer; a worker that ends is started again; metrics "
                       "on the --metrics-listen port and the next ones (default: 1)")
    serve.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    serve.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    pki = sub.add_parser("pki", help="client certificates: issue, revoke, list")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True, metavar="PKI_COMMAND")
    issue = with_data_dir(pki_sub.add_parser("issue", help="write a client certificate and key for a role"))
    issue.add_argument("--role", required=True, choices=("terminal", "bureau", "operator"))
    issue.add_argument("--name", required=True, help="label of the client, e.g. pump-controller-7")
    issue.add_argument("--merchant", help="terminal only: the merchant id it acts for")
    issue.add_argument("--outlet", help="terminal only: the outlet id it acts for")
    scoped = issue.add_mutually_exclusive_group()
    scoped.add_argument("--ranges", help="operator only: scope it to these card ranges (an "
                        "issuer's), e.g. 1,7; it then sees and changes only their cards")
    scoped.add_argument("--partner", type=int, help="operator only: scope it to this coalition "
                        "partner (its settlement and definition)")
    issue.add_argument("--out", help="folder for NAME.crt, NAME.key and ca.crt "
                       "(default: DATA_DIR/pki/clients)")
    issue.add_argument("--days", type=int, default=CLIENT_VALID_DAYS_DEFAULT,
                       help="validity in days (default: %(default)s)")
    renew = with_data_dir(pki_sub.add_parser(
        "renew", help="a new certificate and key for the same client (role, name, merchant, "
        "outlet), e.g. before the old one ends"))
    renew.add_argument("--cert", required=True, help="the client's current certificate file")
    renew.add_argument("--out", help="folder for the new NAME.crt and NAME.key (default: the "
                       "current certificate's folder, whose files are replaced)")
    renew.add_argument("--days", type=int, default=CLIENT_VALID_DAYS_DEFAULT,
                       help="validity in days (default: %(default)s)")
    renew.add_argument("--revoke-old", action="store_true",
                       help="revoke the current certificate at once (else it serves until it ends)")
    revoke = with_data_dir(pki_sub.add_parser("revoke", help="revoke a client certificate (no restart needed)"))
    which_cert = revoke.add_mutually_exclusive_group(required=True)
    which_cert.add_argument("--cert", help="the certificate file to revoke")
    which_cert.add_argument("--serial", help="its serial number, in hex")
    with_data_dir(pki_sub.add_parser("list", help="issued client certificates and whether they are revoked"))
    pki.set_defaults(func=cmd_pki)

    keys = sub.add_parser("keys", help="data keys of stored card numbers: rotate, verify, retire; "
                          "the key-encryption key: rewrap; terminals' PIN keys: terminal-pin-key")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    rotate = with_data_dir(keys_sub.add_parser(
        "rotate", help="re-encrypt every card number under a new data key (safe while serving; "
        "run again to resume)"))
    rotate.add_argument("--max-records", type=int, default=None,
                        help="stop after re-encrypting this many (to spread the work)")
    with_data_dir(keys_sub.add_parser("verify", help="decrypt every stored card number and check it"))
    retire = with_data_dir(keys_sub.add_parser("retire", help="remove a data key no record uses any more"))
    retire.add_argument("key_id")
    rewrap = with_data_dir(keys_sub.add_parser(
        "rewrap", help="rotate the key-encryption key: wrap every key of the data directory "
        "under a new KEK (the gateway stopped; the current KEK as for serve)"))
    new_kek = rewrap.add_mutually_exclusive_group(required=True)
    new_kek.add_argument("--to-kek-file", help="the new KEK's file, outside the data directory "
                         "(made with 32 random bytes if it does not exist)")
    new_kek.add_argument("--to-pkcs11-key", help="the label of the new KEK on the configured "
                         "PKCS#11 token (made there if it does not exist)")
    pin_key = with_data_dir(keys_sub.add_parser(
        "terminal-pin-key", help="give a terminal its PIN key for ISO 8583 PIN blocks (field "
        "52): tdes for ISO 9564 format 0, aes for format 4; kept wrapped by the KEK"))
    pin_key.add_argument("merchant", help="the merchant id of the terminal's certificate")
    pin_key.add_argument("terminal", help="the terminal id it sends in field 41")
    pin_key.add_argument("--kind", choices=("tdes", "aes"), default="tdes",
                         help="tdes: ISO 9564 format 0; aes: format 4 (default: tdes)")
    source = pin_key.add_mutually_exclusive_group(required=True)
    source.add_argument("--out", help="make a random key and write it (hexadecimal, mode "
                        "0600) to this file, for loading into the terminal")
    source.add_argument("--key-file", help="take the key the terminal already has from this "
                        "file (hexadecimal)")
    keys.set_defaults(func=cmd_keys)

    top = sub.add_parser("top", help="watch a running gateway live: requests/s, approvals and "
                         "declines, latency, batches, the store (Ctrl-C ends)")
    top.add_argument("--metrics", default=os.environ.get("CARDGATE_METRICS_LISTEN", METRICS_LISTEN_DEFAULT),
                     metavar="HOST:PORT[,HOST:PORT...]", help="the gateway's metrics endpoint, "
                     "or every worker's, comma-separated (serve --workers prints them) "
                     f"(default: $CARDGATE_METRICS_LISTEN or {METRICS_LISTEN_DEFAULT})")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between readings (default: 1)")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.set_defaults(func=cmd_top)

    backup = with_data_dir(sub.add_parser(
        "backup", help="a consistent, compacted copy of the data directory, while it serves"))
    backup.add_argument("dest", help="a new folder for the backup (it is a data directory itself)")
    backup.set_defaults(func=cmd_backup)
    restore = with_data_dir(sub.add_parser(
        "restore", help="make --data-dir (new) from a backup, and audit it"))
    restore.add_argument("backup", help="the backup folder")
    restore.set_defaults(func=cmd_backup)

    audit = with_data_dir(sub.add_parser("audit", help="check the ledger invariants of a data directory"))
    audit.set_defaults(func=cmd_audit)
    admin = with_data_dir(sub.add_parser(
        "admin-log", help="operators' and bureaus' acts (adjustments, status changes, PINs, "
        "closures, reversals...): who, when, on which card"))
    admin.add_argument("--since", help="from this time (ISO 8601, UTC unless it says)")
    admin.add_argument("--until", help="before this time")
    admin.add_argument("--actor", help="only this actor: its certificate serial (hex; the last "
                       "8 digits are enough), as `cardgate pki list` shows")
    admin.add_argument("--limit", type=int, default=None, help="at most this many lines")
    admin.set_defaults(func=cmd_admin_log)

    def client_parser(name, help_text, amount=True, card=True, original=False,
                      identity="demo-terminal"):
        p = add_connection_options(with_data_dir(sub.add_parser(name, help=help_text)), identity)
        if card:
            which = p.add_mutually_exclusive_group(required=True)
            which.add_argument("--pan", help="card number")
            which.add_argument("--demo-card", type=int, metavar="N",
                               help="demo card N of the data directory's demo cards (demo-cards.wrapped)")
        if amount:
            p.add_argument("--amount", required=True, help="amount in units, e.g. 12.50")
            p.add_argument("--currency", default="EUR", help="ISO 4217 code (default: EUR)")
        if original:
            p.add_argument("--original-request-id", required=True,
                           help="request id of the request to refund or reverse")
        if name not in ("balance", "points", "statement", "settlement", "analytics", "transactions",
                        "invoice"):
            p.add_argument("--request-id", default=None,
                           help="UUID of this request (default: a new time-ordered one); reuse it to retry")
        p.set_defaults(func=cmd_client)
        return p

    client_parser("balance", "show a card's balance", amount=False)
    client_parser("load", "load value onto a card (activates a new gift card)")
    pay = client_parser("pay", "pay with a card")
    fuel = pay.add_argument_group("fuel and fleet cards")
    fuel.add_argument("--product", type=int, metavar="CODE",
                      help="product code of what is sold (the demo: 19 diesel, 1 petrol 95, 200 shop)")
    fuel.add_argument("--litres", help="volume dispensed, e.g. 64.210 (needs --product)")
    fuel.add_argument("--odometer", type=int, metavar="KM", help="odometer reading for fleet cards")
    fuel.add_argument("--driver", default="", help="driver id for fleet cards that ask for one")
    fuel.add_argument("--vehicle", default="", help="vehicle id for fleet cards that ask for one")
    client_parser("points", "show a card's loyalty points and when they expire", amount=False)
    earn = client_parser("earn", "put loyalty points on a card", amount=False)
    earn.add_argument("--points", type=int, required=True)
    earn.add_argument("--valid-days", type=int, default=0, metavar="DAYS",
                      help="days the points stay usable (default 0: as the card's program says; "
                      "never without a program)")
    redeem = client_parser("redeem", "spend a card's loyalty points, earliest-expiring first",
                           amount=False)
    redeem.add_argument("--points", type=int, required=True)
    client_parser("refund", "refund part or all of an earlier payment", original=True)
    client_parser("reverse", "undo an earlier request by its request id", amount=False,
                  card=False, original=True)
    loyalty_cli.add_commands(sub, client_parser)
    rpc_verbs.add_verbs(sub, add_connection_options, with_data_dir, cmd_rpc_verb)
    hooks = add_connection_options(with_data_dir(sub.add_parser(
        "webhooks", help="operator: deliver every committed journal entry as a signed event to "
        "HTTPS endpoints, resuming after a restart (see docs/events.md)")), "demo-operator")
    hooks.add_argument("--config", required=True, metavar="FILE",
                       help="JSON: endpoints (name, url, secret_file, ca_file), state_dir, "
                       "attempts, backoff_s, backoff_max_s, timeout_s")
    hooks.set_defaults(func=cmd_webhooks)
    office_cli.add_commands(sub, client_parser)
    # Groups of subcommands from packages built on the gateway (the bureau's), found by the
    # "cardgate.commands" entry points they declare: the gateway never imports them.
    for group in sorted(entry_points(group="cardgate.commands"), key=lambda e: e.name):
        group.load()(sub, lambda p, identity: add_connection_options(with_data_dir(p), identity))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format, args.log_file, getattr(args, "worker_index", None))
    if getattr(args, "request_id", "unset") is None:
        args.request_id = new_request_id()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
