"""`cardgate bureau`: a card bureau's commands, as a client of the gateway.

    export  a personalization job of issued cards, signed (and encrypted to the bureau)
    encode  a job's cards with a PC/SC chip encoder and a serial stripe encoder,
            resumable: run it again after an interruption or for the cards that failed
    import  send a results file's outcomes to the gateway (when encode could not)
    status  where a job stands at the gateway
    verify  read a finished card with only the documented key derivation, as another
            vendor's terminal would, and say what it holds
"""
import pathlib
import sys

import grpc

from cardgate.devices import personalize
from cardgate.gateway.cli.channels import client_key_pem
from cardgate.gateway.cli.client import channel_of
from cardgate.gateway.cli.demo import clients_dir
from cardgate.gateway.issuing import job_file
from cardgate.gateway.request_ids import new_request_id
from cardgate.v1 import common_pb2, issuing_pb2, issuing_pb2_grpc

from .results import ResultsError, ResultsLog

AID_DEFAULT = "F00101"
RESULT_NAMES = {issuing_pb2.PERSONALIZATION_RESULT_ENCODED: "encoded",
                issuing_pb2.PERSONALIZATION_RESULT_FAILED: "FAILED",
                issuing_pb2.PERSONALIZATION_RESULT_PENDING: "pending"}


def add_commands(sub, connected):
    """connected(parser, identity) adds the data directory and connection options."""
    bureau = sub.add_parser("bureau", help="card bureau: export, encode, import and follow "
                            "personalization jobs")
    commands = bureau.add_subparsers(dest="bureau_command", required=True, metavar="BUREAU_COMMAND")

    export = connected(commands.add_parser("export", help="write a personalization job of issued cards"),
                       "demo-bureau")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--card-id", type=int, action="append", help="a card id (repeat it)")
    which.add_argument("--card-ids", metavar="FILE", help="a file of card ids, one a line ('-': stdin)")
    which.add_argument("--issue-request-id", metavar="UUID",
                       help="every card the IssueCards request with this id issued")
    export.add_argument("--out", required=True, help="the job file to write")
    sealing = export.add_mutually_exclusive_group()
    sealing.add_argument("--bureau-cert", metavar="PEM",
                         help="seal the job to this bureau certificate of the gateway's CA "
                         "(default: the certificate this command connects with)")
    sealing.add_argument("--unsealed", action="store_true",
                         help="operators only: export the job signed but not sealed")
    export.add_argument("--aid", default=AID_DEFAULT, help=f"DESFire application id, hex (default {AID_DEFAULT})")
    export.add_argument("--value-limit-minor", type=int, default=0,
                        help="create an offline value file with this limit (default 0: none)")
    export.add_argument("--service-code", default="", help="stripe service code (default 701)")
    export.add_argument("--key-label", default="", help="name of the master key the bureau uses")
    export.add_argument("--request-id", default=None, help="UUID of the export; reuse it to retry")

    encode = connected(commands.add_parser(
        "encode", help="encode a job's cards: chip over PC/SC, stripe over a serial encoder; "
        "resumable"), "demo-bureau")
    encode.add_argument("job", help="the job file")
    encode.add_argument("--msr", required=True, metavar="PORT", help="serial port of the MSR206 encoder")
    encode.add_argument("--reader", action="append", metavar="NAME",
                        help="PC/SC reader to take cards from (repeat it; default: every reader)")
    encode.add_argument("--master-key", required=True, metavar="FILE",
                        help="the chip master key the job names, 32 hexadecimal characters")
    encode.add_argument("--results", metavar="FILE", help="results file (default: JOB.results.jsonl); "
                        "it is what makes a rerun go on where the last one stopped")
    encode.add_argument("--ca", metavar="PEM", help="the gateway's CA certificate, to check the "
                        "job's signature (default: CERT_DIR/ca.crt)")
    encode.add_argument("--bureau-key", metavar="PEM", help="the bureau's private key, for a sealed "
                        "job (default: the key this command connects with)")
    encode.add_argument("--card-wait-s", type=float, default=None,
                        help="give up when no card comes for this long (default: wait)")
    encode.add_argument("--offline", action="store_true",
                        help="do not report to the gateway (send the results later with import)")

    imp = connected(commands.add_parser("import", help="send a results file's outcomes to the gateway"),
                    "demo-bureau")
    imp.add_argument("results", help="a results file written by encode")

    status = connected(commands.add_parser("status", help="where a job stands at the gateway"),
                       "demo-bureau")
    status.add_argument("job_id")

    verify = commands.add_parser(
        "verify", help="read a finished card in a PC/SC reader with keys derived from the master key "
        "alone (AN10922), and say what it holds")
    verify.add_argument("--master-key", required=True, metavar="FILE",
                        help="the chip master key, 32 hexadecimal characters")
    verify.add_argument("--reader", metavar="NAME", help="the PC/SC reader (default: the first holding a card)")
    verify.add_argument("--system-id", default=personalize.SYSTEM_ID.hex().upper(), metavar="HEX",
                        help="the key derivation's system identifier, as the job's chip profile "
                        f"gives it (default {personalize.SYSTEM_ID.hex().upper()}, 'cardgate')")
    verify.add_argument("--framing", choices=("iso", "native"), default="iso",
                        help="DESFire commands ISO 7816-4 wrapped (default) or native")
    bureau.set_defaults(func=run)


def run(args) -> int:
    try:
        if args.bureau_command == "encode":
            return _encode(args, channel_of)
        if args.bureau_command == "verify":
            return _verify(args)
        channel = channel_of(args)
        if channel is None:
            return 2
        with channel:
            stub = issuing_pb2_grpc.IssuingServiceStub(channel)
            if args.bureau_command == "export":
                return _export(args, stub)
            if args.bureau_command == "import":
                return _import(args, stub)
            return _status(args, stub)
    except (OSError, ValueError) as exc:
        print(f"cardgate: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"cardgate: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1


def _export(args, stub) -> int:
    if args.card_ids:
        text = sys.stdin.read() if args.card_ids == "-" else pathlib.Path(args.card_ids).read_text()
        card_ids = [int(line) for line in text.split()]
    else:
        card_ids = args.card_id or []
    parts = stub.ExportPersonalizationJob(issuing_pb2.ExportPersonalizationJobRequest(
        request_id=args.request_id or new_request_id(), card_ids=card_ids,
        issue_request_id=args.issue_request_id or "",
        bureau_certificate_pem=b"" if args.unsealed else _own_certificate(args).read_bytes(),
        allow_unsealed=args.unsealed,
        service_code=args.service_code, master_key_label=args.key_label,
        chip=issuing_pb2.ChipProfile(aid=bytes.fromhex(args.aid),
                                     value_limit_minor=args.value_limit_minor)), timeout=600)
    out = pathlib.Path(args.out)
    with open(out, "xb") as f:               # never over an earlier job
        out.chmod(0o600)
        try:
            for response in parts:
                f.write(response.job_file)
        except BaseException:
            f.close()
            out.unlink()                     # no half job left behind
            raise
    print(f"{response.message}; written to {out}")
    return 0


def _reporter(stub, job_id):
    """send(outcome): one card's result to the gateway (raises if it cannot be sent)."""
    def send(outcome):
        response = stub.ReportPersonalization(issuing_pb2.ReportPersonalizationRequest(
            request_id=outcome.request_id, job_id=job_id, seq=outcome.seq,
            result=issuing_pb2.PERSONALIZATION_RESULT_ENCODED if outcome.encoded
            else issuing_pb2.PERSONALIZATION_RESULT_FAILED,
            reason=outcome.reason, chip_uid=bytes.fromhex(outcome.uid)), timeout=30)
        if response.result_code != common_pb2.RESULT_CODE_APPROVED:
            print(f"card {outcome.seq} {response.masked_pan}: the gateway answered "
                  f"{response.message}", file=sys.stderr)
    return send


def _import(args, stub) -> int:
    log = ResultsLog.read(args.results)
    try:
        send, unsent = _reporter(stub, log.job_id), 0
        pending = log.unreported()
        for outcome in pending:
            try:
                send(outcome)
                log.mark_reported(outcome)
            except grpc.RpcError as exc:
                unsent += 1
                print(f"card {outcome.seq}: {exc.code().name}: {exc.details()}", file=sys.stderr)
    finally:
        log.close()
    print(f"job {log.job_id}: {len(pending) - unsent} results sent, {unsent} not")
    return 1 if unsent else 0


def _status(args, stub) -> int:
    r = stub.GetPersonalizationJob(issuing_pb2.GetPersonalizationJobRequest(job_id=args.job_id), timeout=30)
    print(f"job {r.job_id}: {len(r.cards)} cards, {r.encoded} encoded, {r.failed} failed, {r.pending} pending")
    for card in r.cards:
        print(f"  {card.seq:>6} {card.masked_pan} {RESULT_NAMES[card.result]:<8} "
              f"{issuing_pb2.CardStage.Name(card.stage).removeprefix('CARD_STAGE_').lower():<12} "
              f"attempts {card.attempts}" + (f"  {card.reason}" if card.reason else ""))
    return 0


def _read_job(args):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_path = pathlib.Path(args.ca) if args.ca else \
        pathlib.Path(args.cert_dir or clients_dir(args.data_dir)) / "ca.crt"
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    data = pathlib.Path(args.job).read_bytes()
    if args.bureau_key:
        pem = pathlib.Path(args.bureau_key).read_bytes()
    elif job_file.is_sealed(data):              # sealed to the certificate this command uses
        pem = client_key_pem(args.cert_dir or clients_dir(args.data_dir), args.identity)
    else:
        pem = None
    key = serialization.load_pem_private_key(pem, None) if pem else None
    return job_file.read(data, ca, key)


def _own_certificate(args) -> pathlib.Path:
    """The certificate a job is sealed to: given, or the one this command connects with."""
    if args.bureau_cert:
        return pathlib.Path(args.bureau_cert)
    return pathlib.Path(args.cert_dir or clients_dir(args.data_dir)) / f"{args.identity}.crt"


def _master_key(path) -> bytes:
    text = "".join(pathlib.Path(path).read_text().split())
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 16:
        raise ValueError(f"{path}: the master key must be 32 hexadecimal characters (AES-128)")
    return key


def _encode(args, channel_of) -> int:
    from cardgate.devices import msr, pcsc

    from .encode import Encoder, NoCard
    from .progress import CardProgress

    try:
        job = _read_job(args)
    except job_file.JobFileError as exc:
        print(f"cardgate: {args.job}: {exc}", file=sys.stderr)
        return 2
    master_key = _master_key(args.master_key)
    try:
        results = ResultsLog(args.results or f"{args.job}.results.jsonl", job.job_id)
    except ResultsError as exc:
        print(f"cardgate: {exc}", file=sys.stderr)
        return 2
    channel = None if args.offline else channel_of(args)
    if channel is None and not args.offline:
        return 2

    def offline(_outcome):
        raise ConnectionError("offline: send the results with 'cardgate bureau import'")

    report = _reporter(issuing_pb2_grpc.IssuingServiceStub(channel), job.job_id) if channel else offline
    encoder = msr.Msr206(args.msr)
    try:
        readers = args.reader or pcsc.readers()
        done_before = sum(results.encoded(c.seq) for c in job.cards)
        with CardProgress(len(job.cards), done_before, f"job {job.job_id}") as progress:
            engine = Encoder(job, results, readers, encoder, master_key, report, say=progress.say,
                             advance=progress.advance, card_wait_s=args.card_wait_s)
            try:
                encoded, failed = engine.run()
            except NoCard as exc:
                progress.say(f"stopped: {exc}; run the same command again to go on")
                return 4
    except pcsc.PcscError as exc:
        print(f"cardgate: {exc}", file=sys.stderr)
        return 2
    finally:
        encoder.close()
        results.close()
        if channel is not None:
            channel.close()
    left = sum(not results.encoded(c.seq) for c in job.cards)
    unsent = len(results.unreported())
    print(f"job {job.job_id}: {encoded} encoded and {failed} failed in this run; "
          f"{len(job.cards) - left} of {len(job.cards)} encoded in all" +
          (f"; {left} left: run the same command again to encode them" if left else "") +
          (f"; {unsent} results not reported: cardgate bureau import {results.path}" if unsent else ""))
    return 0 if not left else 1


def _verify(args) -> int:
    from cardgate.devices import desfire, pcsc

    from .verify import read_card

    master_key = _master_key(args.master_key)
    try:
        system_id = bytes.fromhex(args.system_id)
    except ValueError:
        system_id = b""
    if not 1 <= len(system_id) <= personalize.SYSTEM_ID_MAX:
        raise ValueError(f"--system-id: 1 to {personalize.SYSTEM_ID_MAX} bytes in hexadecimal")
    try:
        reader = args.reader or _reader_holding_a_card(pcsc)
        connection = pcsc.Connection(reader)
        try:
            lines, problems = read_card(desfire.Desfire(connection.transmit, native=args.framing == "native"),
                                        master_key, system_id)
        finally:
            connection.close()
    except (pcsc.PcscError, desfire.DesfireError) as exc:
        print(f"cardgate: {exc}", file=sys.stderr)
        return 1
    print(f"reader: {reader} ({args.framing} framing)")
    print("\n".join(lines))
    for problem in problems:
        print(f"NOT VERIFIED: {problem}")
    if not problems:
        print("verified: every key derived from the master key alone (AN10922: UID || AID || "
              "system id || key number) is the card's, and the card data reads")
    return 1 if problems else 0


def _reader_holding_a_card(pcsc) -> str:
    states = pcsc.ReaderStates()
    try:
        names = states.names()
        holding = states.present(names) if names else set()
    finally:
        states.close()
    reader = next((name for name in names if name in holding), None)
    if reader is None:
        raise pcsc.PcscError(f"no card in any reader ({', '.join(names) or 'no readers'})")
    return reader
