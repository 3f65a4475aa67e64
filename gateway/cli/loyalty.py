"""The CLI's loyalty commands, as clients of a running gateway: an operator's program
configuration (from a JSON file), settlement and analytics; a till's sale paid
otherwise; a card's statement and standing."""
import calendar
import datetime
import json
import sys
import time

from google.protobuf import json_format

from cardgate.gateway.cli import office as office_cli
from cardgate.gateway.cli.demo import program_messages
from cardgate.gateway.money import AmountError, format_minor, parse_amount_minor
from cardgate.v1 import common_pb2, loyalty_pb2, loyalty_pb2_grpc

PAYMENT_METHODS = {"cash": common_pb2.PAYMENT_METHOD_CASH,
                   "bank-card": common_pb2.PAYMENT_METHOD_BANK_CARD,
                   "other": common_pb2.PAYMENT_METHOD_OTHER}


def _day(text: str) -> int:
    """'2026-11-01' -> that day's first second (UTC)."""
    try:
        return calendar.timegm(datetime.date.fromisoformat(text).timetuple())
    except ValueError:
        raise SystemExit(f"cardgate: {text!r} is not a date like 2026-11-01") from None


def _result(response) -> int:
    print(f"{common_pb2.ResultCode.Name(response.result_code)}: {response.message}")
    return 0 if response.result_code == common_pb2.RESULT_CODE_APPROVED else 3


def program_set(args, stub) -> int:
    try:
        config = json.loads(open(args.file, encoding="utf-8").read())
        program, rules = program_messages(config)
    except (OSError, ValueError, json_format.ParseError) as exc:
        print(f"cardgate: {args.file}: {exc}", file=sys.stderr)
        return 2
    status = _result(stub.SetProgram(program, timeout=10))
    if status:
        return status
    print(f"program {program.program_id}: {len(rules.rules)} earn rules")
    return _result(stub.SetEarnRules(rules, timeout=10))


def print_loyalty(outcome) -> None:
    """The loyalty lines of an authorization (pay, sale)."""
    if outcome.discount_bp:
        print(f"  discount {format_minor(outcome.discount.amount_minor, outcome.discount.currency)}: "
              f"{outcome.discount_reason}")
    if outcome.points_redeemed:
        print(f"  {outcome.points_redeemed} points paid "
              f"{format_minor(outcome.points_value.amount_minor, outcome.points_value.currency)}")
    if outcome.explanation:
        print(f"  {outcome.explanation}")
    print(f"  points now {outcome.points_balance}" + (f", tier {outcome.tier}" if outcome.tier else "") +
          (" (up!)" if outcome.tier_up else ""))


def sale(args, pan, stub) -> int:
    try:
        amount = parse_amount_minor(args.amount, args.currency)
    except AmountError as exc:
        print(f"cardgate: --amount: {exc}", file=sys.stderr)
        return 2
    answer = stub.RecordSale(loyalty_pb2.RecordSaleRequest(
        request_id=args.request_id, pan=pan, amount=common_pb2.Money(amount_minor=amount,
                                                                     currency=args.currency),
        payment_method=PAYMENT_METHODS[args.method], points=args.points), timeout=10).authorization
    print(f"sale {answer.masked_pan}: {answer.message} "
          f"({common_pb2.ResultCode.Name(answer.result_code)})")
    if answer.result_code == common_pb2.RESULT_CODE_APPROVED:
        print(f"  to pay by {args.method}: "
              f"{format_minor(answer.approved.amount_minor, answer.approved.currency)}")
        print_loyalty(answer.loyalty)
    print(f"  request id {args.request_id}")
    return 0 if answer.result_code == common_pb2.RESULT_CODE_APPROVED else 3


def statement(pan, stub) -> int:
    answer = stub.GetStatement(loyalty_pb2.GetStatementRequest(pan=pan), timeout=10)
    print(f"{answer.masked_pan}: {answer.points} points")
    for line in answer.lines:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(line.time_s))
        print(f"  {when}  {line.description}")
    return 0


def member(args, pan, stub) -> int:
    if args.birthday:
        try:
            month, day = (int(part) for part in args.birthday.split("-"))
        except ValueError:
            print("cardgate: --birthday is MM-DD, e.g. 05-14", file=sys.stderr)
            return 2
        status = _result(stub.SetMember(loyalty_pb2.SetMemberRequest(
            request_id=args.request_id, pan=pan, birth_month=month, birth_day=day), timeout=10))
        if status:
            return status
    m = stub.GetMember(loyalty_pb2.GetMemberRequest(pan=pan), timeout=10)
    print(f"{m.masked_pan}: program {m.program_id}, tier {m.tier or '(base)'}, {m.points} points")
    print(f"  last 12 months: {m.rolling_total}" +
          (f"; {m.to_next_tier} more to {m.next_tier}" if m.next_tier else ""))
    print(f"  discount {m.discount_bp / 100:g} %" +
          (f"; {format_minor(m.to_next_discount_minor, m.currency)} more to "
           f"{m.next_discount_bp / 100:g} %"
           if m.next_discount_bp else ""))
    return 0


def settlement(args, stub) -> int:
    r = stub.GetSettlement(loyalty_pb2.GetSettlementRequest(
        program_id=args.program, from_s=_day(args.since), until_s=_day(args.until)), timeout=60)
    print(f"program {args.program}, {args.since} to {args.until} ({r.currency}):")
    for p in r.partners:
        print(f"  partner {p.partner_id} {p.partner_name}: issued {p.points_issued}, "
              f"redeemed {p.points_redeemed}; "
              f"pays {format_minor(p.pays_minor, r.currency)}, receives "
              f"{format_minor(p.receives_minor, r.currency)}, net {format_minor(p.net_minor, r.currency)}")
    for t in r.transfers:
        print(f"  partner {t.from_partner_id} pays partner {t.to_partner_id} "
              f"{format_minor(t.amount_minor, r.currency)} ({t.points} points)")
    for money in r.money:
        print(f"money in {money.currency}, every card loaded or spent at partners' outlets:")
        for p in money.partners:
            print(f"  partner {p.partner_id} {p.partner_name}: loaded "
                  f"{format_minor(p.loaded_minor, money.currency)}, spent "
                  f"{format_minor(p.spent_minor, money.currency)}; pays "
                  f"{format_minor(p.pays_minor, money.currency)}, receives "
                  f"{format_minor(p.receives_minor, money.currency)}, net "
                  f"{format_minor(p.net_minor, money.currency)}")
        for t in money.transfers:
            print(f"  partner {t.from_partner_id} pays partner {t.to_partner_id} "
                  f"{format_minor(t.amount_minor, money.currency)}")
    return 0


def analytics(args, stub, channel) -> int:
    if args.range:                  # a plain range: its sales only (office.sales_analytics)
        return office_cli.sales_analytics(args, channel, _day(args.since), _day(args.until))
    r = stub.GetProgramAnalytics(loyalty_pb2.GetProgramAnalyticsRequest(
        program_id=args.program, from_s=_day(args.since), until_s=_day(args.until)), timeout=600)
    print(f"program {args.program}, {args.since} to {args.until}:")
    print(f"  {r.active_cards} active cards, {r.transactions} sales of "
          f"{format_minor(r.sales_minor, r.currency)} (returns {format_minor(r.returns_minor, r.currency)})")
    print(f"  average check {format_minor(r.average_check_minor, r.currency)}, "
          f"{r.purchases_per_card_x100 / 100:g} sales a card")
    print(f"  retention {r.retention_bp / 100:g} % ({r.retained_cards} of {r.previous_active_cards} "
          "active in the period before)")
    print(f"  points earned {r.points_earned}, redeemed {r.points_redeemed}, expired "
          f"{r.points_expired}, returned {r.points_returned}; breakage {r.breakage_bp / 100:g} %")
    return office_cli.sales_analytics(args, channel, _day(args.since), _day(args.until))


def run(args, channel, pan) -> int:
    stub = loyalty_pb2_grpc.LoyaltyServiceStub(channel)
    if args.command == "program":
        return program_set(args, stub)
    if args.command == "sale":
        return sale(args, pan, stub)
    if args.command == "statement":
        return statement(pan, stub)
    if args.command == "member":
        return member(args, pan, stub)
    if args.command == "settlement":
        return settlement(args, stub)
    return analytics(args, stub, channel)


def add_commands(sub, client_parser) -> None:
    """The loyalty subcommands, on the CLI's parser."""
    program = client_parser("program", "operator: set a loyalty program and its earn rules from "
                            "a JSON file (cardgate.v1.SetProgramRequest + \"rules\")", amount=False,
                            card=False, identity="demo-operator")
    program.add_argument("--file", required=True, help="the program, e.g. docs/demo-program.json")
    sale_parser = client_parser("sale", "a sale paid in cash or by bank card, the loyalty card shown: "
                                "discount, points paid and earned")
    sale_parser.add_argument("--method", choices=sorted(PAYMENT_METHODS), default="cash",
                             help="how the rest is paid (default: cash)")
    sale_parser.add_argument("--points", type=int, default=0, help="points the member pays with")
    client_parser("statement", "a card's points history, each line explained", amount=False)
    member_parser = client_parser("member", "a card's tier, progress and discount; --birthday "
                                  "sets the holder's birthday", amount=False, identity="demo-operator")
    member_parser.add_argument("--birthday", metavar="MM-DD", help="the holder's birthday")
    for name, help_text in (("settlement", "operator: who owes whom in a coalition, for a period"),
                            ("analytics", "operator: a program's (or a range's) figures for a period, by "
                             "local day, partner, outlet and product")):
        p = client_parser(name, help_text, amount=False, card=False, identity="demo-operator")
        p.add_argument("--program", type=int, default=1, help="program id (default: 1)")
        if name == "analytics":
            p.add_argument("--range", type=int, default=0, help="a card range's sales instead "
                           "of a program's (a plain gift or fleet range too)")
            p.add_argument("--csv", metavar="FILE", help="write the days, partners, outlets and "
                           "products as CSV")
            p.add_argument("--chart", metavar="FILE.png", help="draw the daily sales, active "
                           "cards and points")
        p.add_argument("--from", dest="since", required=True, metavar="YYYY-MM-DD",
                       help="first day (UTC)")
        p.add_argument("--to", dest="until", required=True, metavar="YYYY-MM-DD",
                       help="the day after the last (UTC)")
