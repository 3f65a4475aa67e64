"""Logs: lines for people (text) or JSON lines for machines, to stderr or a file, at a
level the operator chooses. Every answered request is one line on the logger
cardgate.requests (INFO): its request id, RPC, operation, terminal, result, latency and
masked card number; never a full PAN, a track or a PIN.
"""
import json
import logging
import sys
import threading
import time

import functools

from cardgate.gateway.security.pan import mask, mask_pans_in
from cardgate.gateway.validation import is_uuid_text

REQUESTS = logging.getLogger("cardgate.requests")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_FIELDS = ("request_id", "rpc", "operation", "terminal", "caller", "result", "latency_ms", "card")


_encode = json.JSONEncoder(separators=(",", ":")).encode
_stamps = {}                            # (as_json, second) -> its text, the last one only
_worker = {}                            # {"worker": index} in a worker of `serve --workers`


def stamp(created: float, as_json: bool) -> str:
    """A log line's time: UTC ISO 8601 for JSON, local 'YYYY-MM-DD HH:MM:SS,mmm' for text
    (as logging's own asctime), the second's text computed once."""
    second = int(created)
    text = _stamps.get((as_json, second))
    if text is None:
        text = time.strftime("%Y-%m-%dT%H:%M:%S" if as_json else "%Y-%m-%d %H:%M:%S",
                             time.gmtime(second) if as_json else time.localtime(second))
        _stamps.clear()
        _stamps[(as_json, second)] = text
    ms = int(created * 1000) % 1000
    return f"{text}.{ms:03d}Z" if as_json else f"{text},{ms:03d}"


def json_line(created: float, level: str, logger: str, message: str, fields: dict) -> str:
    return _encode({"time": stamp(created, True), "level": level, "logger": logger,
                    **_worker, "message": message, **fields})


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, the request's fields."""

    def format(self, record) -> str:
        fields = {field: getattr(record, field) for field in REQUEST_FIELDS if hasattr(record, field)}
        if record.exc_info:
            fields["error"] = record.exc_text or self.formatException(record.exc_info)
        return json_line(record.created, record.levelname, record.name, record.getMessage(), fields)


class _RequestLines:
    """The request log's fast path, once configure() chose a destination: each line is
    formatted here and written to the handler's own stream under its lock (the same
    form as every other line), without a LogRecord: a fifth of the cost. Lines are
    flushed at most FLUSH_S after they are written."""
    FLUSH_S = 0.5

    def __init__(self):
        self.handler, self.json, self.tag = None, False, ""
        self._dirty = threading.Event()

    def use(self, handler, as_json: bool, tag: str):
        first = self.handler is None and not hasattr(self, "_thread")
        self.handler, self.json, self.tag = handler, as_json, tag
        if first:
            self._thread = threading.Thread(target=self._flusher, name="cardgate-log-flush", daemon=True)
            self._thread.start()

    def write(self, message: str, fields: dict):
        now = time.time()
        line = json_line(now, "INFO", REQUESTS.name, message, fields) if self.json else \
            f"{stamp(now, False)} INFO {REQUESTS.name}{self.tag}: {message}"
        handler = self.handler
        with handler.lock:
            handler.stream.write(line + "\n")
        self._dirty.set()

    def _flusher(self):
        while True:
            self._dirty.wait()
            time.sleep(self.FLUSH_S)
            self._dirty.clear()
            handler = self.handler
            try:
                if handler is not None:
                    handler.flush()
            except (OSError, ValueError):         # closed at exit
                pass


_lines = _RequestLines()


class _LineFileHandler(logging.FileHandler):
    """A log file several processes append to (the workers of `serve --workers`): every
    line is one write() with O_APPEND, so lines of two workers never mix."""

    def _open(self):
        return open(self.baseFilename, self.mode, buffering=1, encoding=self.encoding, errors=self.errors)


def configure(level: str, fmt: str = "text", destination: str = None, worker: int = None):
    """Where logs go (a file, or stderr for None or '-') and in which form. worker: the
    index of a worker of `serve --workers`, named on each line (and its file written a
    line at a time)."""
    tag = f" (worker {worker})" if worker is not None else ""
    _worker.clear()
    if worker is not None:
        _worker["worker"] = worker
    handler = logging.StreamHandler(sys.stderr) if destination in (None, "", "-") else \
        (_LineFileHandler if worker is not None else logging.FileHandler)(destination, encoding="utf-8")
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter(TEXT_FORMAT.replace("%(name)s", "%(name)s" + tag)))
    handler.addFilter(MaskPans())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    _lines.use(handler, fmt == "json", tag)


def card_of(request) -> str:
    """The masked card number a request names ('' when none)."""
    pan = getattr(request, "pan", "") or getattr(request, "track2", "")[1:].split("=")[0]
    return mask(pan) if pan else ""


def shown_request_id(text) -> str:
    """A request id as logs show it: only a UUID is quoted (a client may put anything
    in the field, a card number too)."""
    if not text or not isinstance(text, str):
        return ""
    return text if len(text) == 36 and is_uuid_text(text) else f"(not a UUID, {len(text)} characters)"


@functools.lru_cache(maxsize=1024)
def _names_of(caller) -> tuple:
    """(merchant/outlet of a terminal, certificate name) as logs show them."""
    if caller is None:
        return "", ""
    terminal = f"{caller.merchant_id}/{caller.outlet_id}" if caller.role == "terminal" else ""
    return mask_pans_in(terminal), mask_pans_in(caller.name)


class MaskPans(logging.Filter):
    """Every log line passes through it: a card number anyone put in text that reaches
    a log (an exception's message, a name) is masked."""

    def filter(self, record) -> bool:
        message = record.getMessage()
        masked = mask_pans_in(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_pans_in(logging.Formatter().formatException(record.exc_info))
        return True


def log_request(caller, rpc: str, request, result: str, started: float, operation: str = None):
    if not REQUESTS.isEnabledFor(logging.INFO):
        return
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    terminal, caller_name = _names_of(caller)
    fields = {"request_id": shown_request_id(getattr(request, "request_id", "")), "rpc": rpc,
              "operation": operation or rpc, "terminal": terminal, "caller": caller_name,
              "result": result, "latency_ms": latency_ms, "card": card_of(request)}
    who = fields["caller"] or ("an unauthenticated client" if result == "UNAUTHENTICATED"
                               else "development client")     # (no TLS: loopback only)
    message = (f"{rpc} by {who}: {result} in {latency_ms:.3f} ms"
               + (f" card {fields['card']}" if fields["card"] else "")
               + (f" terminal {terminal}" if terminal else "")
               + (f" request {fields['request_id']}" if fields["request_id"] else ""))
    if _lines.handler is not None:
        _lines.write(message, fields)
    else:                                           # logging as the embedding program set it up
        REQUESTS.info("%s", message, extra=fields)
