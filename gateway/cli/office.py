"""The CLI's office commands, as an operator's client of a running gateway:
`cardgate transactions` lists or exports what happened to cards, `cardgate invoice` a
fleet contract's invoice."""
import contextlib
import sys
import time

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from cardgate.gateway.cli.times import utc_time
from cardgate.gateway.money import format_minor, litres_text
from cardgate.gateway.office import analytics_files
from cardgate.gateway.office.export import FORMATS, Writer
from cardgate.gateway.office.invoice_files import write_csv, write_pdf
from cardgate.v1 import office_pb2, office_pb2_grpc

RESULT_FILTERS = {"all": office_pb2.TRANSACTION_RESULT_FILTER_UNSPECIFIED,
                  "approved": office_pb2.TRANSACTION_RESULT_FILTER_APPROVED,
                  "declined": office_pb2.TRANSACTION_RESULT_FILTER_DECLINED}
PAGE_SIZE = 10_000
EXPORT_TIMEOUT_S = 3600         # a page of a long export, at most


def _progress(args) -> Progress:
    """A progress bar over the period (on a terminal, when the lines go to a file)."""
    shown = bool(args.out) and sys.stderr.isatty()
    return Progress(TextColumn("exporting"), BarColumn(), TextColumn("{task.fields[count]} lines"),
                    TimeRemainingColumn(), disable=not shown, transient=True)


def transactions(args, channel, pan) -> int:
    stub = office_pb2_grpc.OfficeServiceStub(channel)
    from_s = int(utc_time(args.since).timestamp()) if args.since else 0
    until_s = int(utc_time(args.until).timestamp()) if args.until else int(time.time()) + 1
    request = office_pb2.ListTransactionsRequest(
        from_s=from_s, until_s=until_s, pan=pan or "", contract_id=args.contract,
        merchant_id=args.merchant or "", outlet_id=args.outlet or "", partner_id=args.partner,
        range_id=args.range, result=RESULT_FILTERS[args.result], page_size=PAGE_SIZE)
    written = 0
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(args.out, "w", encoding="utf-8", newline="")) \
            if args.out else sys.stdout
        writer = Writer(out, args.format)
        progress = stack.enter_context(_progress(args))
        task = progress.add_task("export", total=max(until_s - from_s, 1), count=0)
        while True:
            cursor = ""
            for batch in stub.ListTransactions(request, timeout=EXPORT_TIMEOUT_S):
                for line in batch.lines:
                    writer.write(line)
                written += len(batch.lines)
                cursor = batch.lines[-1].cursor if batch.lines else cursor
                if batch.lines:
                    progress.update(task, completed=batch.lines[-1].time_s - from_s, count=written)
            if not cursor or args.limit and written >= args.limit:
                break
            request.page_token = cursor
            if args.limit:
                request.page_size = min(PAGE_SIZE, args.limit - written)
    if args.out:
        print(f"{written} transactions written to {args.out}", file=sys.stderr)
    return 0


def add_commands(sub, client_parser) -> None:
    p = client_parser("transactions", "operator: list or export transactions (CSV or JSON lines) "
                      "by card, contract, outlet, partner, range, period, result", amount=False,
                      card=False, identity="demo-operator")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--pan", help="only this card")
    which.add_argument("--demo-card", type=int, metavar="N", help="only demo card N")
    p.add_argument("--from", dest="since", metavar="TIME",
                   help="from this time (ISO 8601, UTC unless it says; default: the beginning)")
    p.add_argument("--until", metavar="TIME", help="before this time (default: now)")
    p.add_argument("--contract", type=int, default=0, help="only cards of this fleet contract")
    p.add_argument("--merchant", help="only this merchant's outlets")
    p.add_argument("--outlet", help="only this outlet of --merchant")
    p.add_argument("--partner", type=int, default=0, help="only at this coalition partner")
    p.add_argument("--range", type=int, default=0, help="only cards of this card range")
    p.add_argument("--result", choices=sorted(RESULT_FILTERS), default="all")
    p.add_argument("--format", choices=FORMATS, default="csv", help="default: csv")
    p.add_argument("--out", metavar="FILE", help="write to this file (default: standard output)")
    p.add_argument("--limit", type=int, default=0, help="at most this many lines")
    _add_invoice(sub, client_parser)


def invoice(args, channel) -> int:
    stub = office_pb2_grpc.OfficeServiceStub(channel)
    answer = stub.GetFleetInvoice(office_pb2.GetFleetInvoiceRequest(
        contract_id=args.contract, from_s=int(utc_time(args.since).timestamp()),
        until_s=int(utc_time(args.until).timestamp())), timeout=EXPORT_TIMEOUT_S)
    money = answer.currency
    print(f"contract {answer.contract_id}, {answer.local_from} to {answer.local_until}: "
          f"charged {format_minor(answer.charged_minor, money)}, refunded "
          f"{format_minor(answer.refunded_minor, money)}, total {format_minor(answer.total_minor, money)}, "
          f"{litres_text(answer.volume_ml)} L in {len(answer.lines)} transactions")
    for path, write in ((args.csv, write_csv), (args.pdf, write_pdf)):
        if path:
            write(answer, path)
            print(f"  written to {path}")
    return 0


def _add_invoice(sub, client_parser) -> None:
    p = client_parser("invoice", "operator: a fleet contract's invoice for a period (totals by "
                      "card, vehicle, driver, product), as CSV and PDF", amount=False, card=False,
                      identity="demo-operator")
    p.add_argument("--contract", type=int, required=True, help="the fleet contract's id")
    p.add_argument("--from", dest="since", required=True, metavar="TIME",
                   help="first moment (ISO 8601, UTC unless it says), e.g. 2026-11-01")
    p.add_argument("--until", required=True, metavar="TIME", help="end (excluded), e.g. 2026-12-01")
    p.add_argument("--csv", metavar="FILE", help="write the invoice as CSV")
    p.add_argument("--pdf", metavar="FILE", help="write the invoice as PDF")


def sales_analytics(args, channel, from_s: int, until_s: int) -> int:
    """The sales part of `cardgate analytics`: by partner, outlet, product and day; --csv
    and --chart write them."""
    stub = office_pb2_grpc.OfficeServiceStub(channel)
    a = stub.GetSalesAnalytics(office_pb2.GetSalesAnalyticsRequest(
        program_id=0 if args.range else args.program, range_id=args.range, from_s=from_s,
        until_s=until_s), timeout=EXPORT_TIMEOUT_S)
    money = a.currency
    t = a.total
    print(f"sales by local day ({a.time_zone}): {t.transactions} sales of "
          f"{format_minor(t.sales_minor, money)}, returns {format_minor(t.returns_minor, money)}, "
          f"{litres_text(t.volume_ml)} L, {t.active_cards} cards")
    for title, rows in (("partner", a.by_partner), ("outlet", a.by_outlet), ("product", a.by_product)):
        for f in rows:
            print(f"  {title} {f.key or '(none)'}{' ' + f.name if f.name else ''}: {f.transactions} sales of "
                  f"{format_minor(f.sales_minor, money)}, {litres_text(f.volume_ml)} L")
    if args.csv:
        analytics_files.write_csv(a, args.csv)
        print(f"  written to {args.csv}")
    if args.chart:
        name = f"range {args.range}" if args.range else f"program {args.program}"
        analytics_files.write_chart(a, args.chart, f"Sales of {name}")
        print(f"  chart drawn in {args.chart}")
    return 0
