"""Transactions as files: a TransactionLine as one CSV row or one JSON line, with money
as decimal text in its currency's minor digits and volumes in litres (exact: written
from integers, never through floats)."""
import csv
import json

from google.protobuf import json_format

from cardgate.gateway.money import decimal_text, litres_text
from cardgate.v1 import common_pb2

COLUMNS = ("local_time", "time_s", "masked_pan", "merchant_id", "outlet_id", "terminal_id",
           "operation", "result", "approval_code", "currency", "amount", "approved", "balance",
           "products", "litres", "odometer_km", "driver_id", "vehicle_id", "points_earned",
           "points_redeemed", "discount", "offline", "flagged_for_review", "contract_id",
           "range_id", "partner_id", "actor", "journal_seq", "request_id", "ref_request_id")
FORMATS = ("csv", "jsonl")


def _products(line) -> str:
    """'19:64.210:98.31 200::4.50': code, litres and money of each line; else the codes."""
    if line.lines:
        currency = line.amount.currency
        return " ".join(f"{p.product_code}:{litres_text(p.volume_ml) if p.volume_ml else ''}:"
                        f"{decimal_text(p.amount_minor, currency) if p.amount_minor else ''}"
                        for p in line.lines)
    return " ".join(str(code) for code in line.product_codes)


def row_of(line) -> dict:
    """The CSV row (COLUMNS) of a cardgate.v1.TransactionLine."""
    currency = line.amount.currency
    return {
        "local_time": line.local_time, "time_s": line.time_s, "masked_pan": line.masked_pan,
        "merchant_id": line.acceptor.merchant_id, "outlet_id": line.acceptor.outlet_id,
        "terminal_id": line.acceptor.terminal_id, "operation": line.operation,
        "result": common_pb2.ResultCode.Name(line.result_code).removeprefix("RESULT_CODE_"),
        "approval_code": line.approval_code, "currency": currency,
        "amount": decimal_text(line.amount.amount_minor, currency),
        "approved": decimal_text(line.approved.amount_minor, currency),
        "balance": decimal_text(line.balance.amount_minor, currency),
        "products": _products(line), "litres": litres_text(line.volume_ml) if line.volume_ml else "",
        "odometer_km": line.odometer_km if line.HasField("odometer_km") else "",
        "driver_id": line.driver_id, "vehicle_id": line.vehicle_id,
        "points_earned": line.points_earned or "", "points_redeemed": line.points_redeemed or "",
        "discount": decimal_text(line.discount_minor, currency) if line.discount_minor else "",
        "offline": "yes" if line.offline else "", "flagged_for_review": "yes" if line.flagged_for_review else "",
        "contract_id": line.contract_id or "", "range_id": line.range_id or "",
        "partner_id": line.partner_id or "", "actor": line.actor, "journal_seq": line.journal_seq or "",
        "request_id": line.request_id, "ref_request_id": line.ref_request_id,
    }


class Writer:
    """Writes TransactionLines to a text file as CSV (with a header) or JSON lines (the
    line's own JSON form: amounts in minor units, as the wire has them)."""

    def __init__(self, out, fmt: str):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        self.out, self.fmt = out, fmt
        if fmt == "csv":
            self.csv = csv.writer(out, lineterminator="\n")
            self.csv.writerow(COLUMNS)

    def write(self, line):
        if self.fmt == "csv":
            row = row_of(line)
            self.csv.writerow([row[column] for column in COLUMNS])
        else:
            self.out.write(json.dumps(json_format.MessageToDict(
                line, preserving_proto_field_name=True), separators=(",", ":")) + "\n")
