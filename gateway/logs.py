"""Logs: lines for people (text) or JSON lines for machines, to stderr or a file, at a
level the operator chooses. Every answered request is one line on the logger
cardgate.requests (INFO): its request id, RPC, operation, terminal, result, latency and
masked card number; never a full PAN, a track or a PIN.
"""
import datetime
import json
import logging
import sys
import time

from .pan import mask

REQUESTS = logging.getLogger("cardgate.requests")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_FIELDS = ("request_id", "rpc", "operation", "terminal", "caller", "result", "latency_ms", "card")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, the request's fields."""

    def format(self, record) -> str:
        out = {"time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
               .isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for field in REQUEST_FIELDS:
            if hasattr(record, field):
                out[field] = getattr(record, field)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


def configure(level: str, fmt: str = "text", destination: str = None):
    """Where logs go (a file, or stderr for None or '-') and in which form."""
    handler = logging.StreamHandler(sys.stderr) if destination in (None, "", "-") else \
        logging.FileHandler(destination, encoding="utf-8")
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def card_of(request) -> str:
    """The masked card number a request names ('' when none)."""
    pan = getattr(request, "pan", "") or getattr(request, "track2", "")[1:].split("=")[0]
    return mask(pan) if pan else ""


def log_request(caller, rpc: str, request, result: str, started: float, operation: str = None):
    if not REQUESTS.isEnabledFor(logging.INFO):
        return
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    terminal = f"{caller.merchant_id}/{caller.outlet_id}" if caller is not None and caller.role == "terminal" else ""
    fields = {"request_id": getattr(request, "request_id", ""), "rpc": rpc, "operation": operation or rpc,
              "terminal": terminal, "caller": caller.name if caller is not None else "",
              "result": result, "latency_ms": latency_ms, "card": card_of(request)}
    REQUESTS.info("%s by %s: %s in %.3f ms%s%s%s", rpc, fields["caller"] or "development client",
                  result, latency_ms,
                  f" card {fields['card']}" if fields["card"] else "",
                  f" terminal {terminal}" if terminal else "",
                  f" request {fields['request_id']}" if fields["request_id"] else "", extra=fields)
