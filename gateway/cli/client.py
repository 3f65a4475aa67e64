"""Client side of the CLI's load / pay / refund / reverse / balance subcommands."""
import sys
import time

import grpc

from cardgate.gateway.cli import loyalty as loyalty_cli, office as office_cli
from cardgate.gateway.cli.channels import open_channel
from cardgate.gateway.cli.demo import clients_dir
from cardgate.gateway.money import (AmountError, format_minor, litres_text, parse_amount_minor,
                                    parse_litres_ml)
from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2, loyalty_pb2,
                         loyalty_pb2_grpc)

LOYALTY_COMMANDS = ("program", "sale", "statement", "member", "settlement", "analytics")


def _print_authorization(verb, request_id, auth) -> int:
    code = common_pb2.ResultCode.Name(auth.result_code)
    print(f"{verb} {auth.masked_pan or ''}: {auth.message} ({code})")
    if auth.approval_code:
        print(f"  approval code {auth.approval_code}, "
              f"{format_minor(auth.approved.amount_minor, auth.approved.currency)}")
    if auth.balance.currency:
        print(f"  balance {format_minor(auth.balance.balance_minor, auth.balance.currency)}, "
              f"available {format_minor(auth.balance.available_minor, auth.balance.currency)}")
    if auth.volume_ml:
        print(f"  volume {litres_text(auth.volume_ml)} L")
    if auth.flagged_for_review:
        print("  flagged for review: past a soft limit")
    if auth.HasField("loyalty"):
        loyalty_cli.print_loyalty(auth.loyalty)
    print(f"  request id {request_id}")
    return 0 if auth.result_code == common_pb2.RESULT_CODE_APPROVED else 3


def _sale(args, amount_minor):
    """(product lines, fleet data) of pay's fuel and fleet options."""
    lines = []
    if args.product is not None:
        lines.append(common_pb2.ProductLine(
            product_code=args.product, amount_minor=amount_minor,
            volume_ml=parse_litres_ml(args.litres) if args.litres else 0))
    elif args.litres:
        raise AmountError("--litres needs --product")
    fleet = common_pb2.FleetData(driver_id=args.driver, vehicle_id=args.vehicle)
    if args.odometer is not None:
        fleet.odometer_km = args.odometer
    return lines, fleet


def _points(args, pan, stub) -> int:
    if args.command == "points":
        r = stub.GetPoints(loyalty_pb2.GetPointsRequest(pan=pan), timeout=10)
        print(f"{r.masked_pan}: {r.points} points")
        for e in r.expiring:
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(e.valid_until_s))
            print(f"  {e.points} expire after {when}")
        return 0
    if args.command == "earn":
        valid_until_s = int(time.time()) + args.valid_days * 86400 if args.valid_days else 0
        r = stub.EarnPoints(loyalty_pb2.EarnPointsRequest(
            request_id=args.request_id, pan=pan, points=args.points, valid_until_s=valid_until_s),
            timeout=10)
    else:
        r = stub.RedeemPoints(loyalty_pb2.RedeemPointsRequest(
            request_id=args.request_id, pan=pan, points=args.points), timeout=10)
    auth = r.authorization
    code = common_pb2.ResultCode.Name(auth.result_code)
    print(f"{args.command} {auth.masked_pan}: {auth.message} ({code})")
    print(f"  {auth.approved.amount_minor} points; the card has {auth.balance.balance_minor}")
    print(f"  request id {args.request_id}")
    return 0 if auth.result_code == common_pb2.RESULT_CODE_APPROVED else 3


def channel_of(args):
    """The channel the connection options (cli.add_connection_options) ask for; None,
    said on stderr, when the client certificate is missing."""
    cert_dir = None if args.insecure else (args.cert_dir or clients_dir(args.data_dir))
    try:
        return open_channel(args.target, cert_dir, args.identity)
    except (OSError, ValueError) as exc:     # a missing certificate, a name not resolved
        print(f"cardgate: {exc}", file=sys.stderr)
        return None


def run(args, pan) -> int:
    channel = channel_of(args)
    if channel is None:
        return 2
    with channel:
        stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
        try:
            if args.command == "balance":
                r = stub.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan), timeout=10)
                print(f"{r.masked_pan}: balance {format_minor(r.balance.balance_minor, r.balance.currency)}, "
                      f"available {format_minor(r.balance.available_minor, r.balance.currency)}, "
                      f"{authorization_pb2.CardStatus.Name(r.status)}, expires {r.expiry_yyyymm}"
                      + (f", {r.units_left} subscription units left" if r.units_left else ""))
                return 0
            if args.command in ("points", "earn", "redeem"):
                return _points(args, pan, loyalty_pb2_grpc.LoyaltyServiceStub(channel))
            if args.command in LOYALTY_COMMANDS:
                return loyalty_cli.run(args, channel, pan)
            if args.command == "transactions":
                return office_cli.transactions(args, channel, pan)
            if args.command == "invoice":
                return office_cli.invoice(args, channel)
            if args.command == "reverse":
                r = stub.Reverse(authorization_pb2.ReverseRequest(
                    request_id=args.request_id, original_request_id=args.original_request_id), timeout=10)
                auth = r.authorization
                if auth.result_code == common_pb2.RESULT_CODE_APPROVED and not auth.masked_pan:
                    # A blind reversal: nothing of that id took effect here (yet).
                    print(f"reverse: request {args.original_request_id} is not known here: "
                          "nothing moved; it is declined if it arrives later")
                    print(f"  request id {args.request_id}")
                    return 0
                return _print_authorization("reverse", args.request_id, auth)
            try:
                amount = common_pb2.Money(amount_minor=parse_amount_minor(args.amount, args.currency),
                                          currency=args.currency)
            except AmountError as exc:
                print(f"cardgate: --amount: {exc}", file=sys.stderr)
                return 2
            if args.command == "load":
                r = stub.LoadValue(authorization_pb2.LoadValueRequest(
                    request_id=args.request_id, pan=pan, amount=amount), timeout=10)
            elif args.command == "pay":
                try:
                    lines, fleet = _sale(args, amount.amount_minor)
                except AmountError as exc:
                    print(f"cardgate: {exc}", file=sys.stderr)
                    return 2
                r = stub.Purchase(authorization_pb2.PurchaseRequest(
                    request_id=args.request_id, pan=pan, amount=amount, lines=lines,
                    fleet=fleet), timeout=10)
            else:
                r = stub.Refund(authorization_pb2.RefundRequest(
                    request_id=args.request_id, pan=pan, amount=amount,
                    original_request_id=args.original_request_id), timeout=10)
            return _print_authorization(args.command, args.request_id, r.authorization)
        except grpc.RpcError as exc:
            print(f"cardgate: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
