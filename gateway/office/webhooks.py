"""`cardgate webhooks`: a relay that follows OfficeService.WatchEvents and delivers every
event to configured HTTPS endpoints, at least once, resuming after a restart.

Each endpoint has its own cursor (the seq of the last event it has done with, delivered
or dead-lettered), kept in the state directory and replaced atomically after each event,
so a relay killed at any moment resumes where that endpoint was: an event delivered but
not yet recorded is delivered again (receivers dedup by its id, which never changes).

A delivery is an HTTPS POST of the event's JSON (proto3 JSON, field names as in the
proto), with headers
  X-Cardgate-Event-Id: journal-<seq>
  X-Cardgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the
                        endpoint's secret>
A 2xx answer delivers it. Anything else (another status, a refused connection, a
timeout) is retried after a delay that doubles from backoff_s up to backoff_max_s, at most
attempts times; then the event is appended to the endpoint's dead-letter file (one JSON
line: the event, the last error, when) and the relay goes on with the next.

The configuration is a JSON file:
  {"state_dir": "webhooks-state",
   "endpoints": [{"name": "erp", "url": "https://erp.example/cardgate",
                  "secret_file": "erp.secret", "ca_file": "erp-ca.pem"}],
   "attempts": 8, "backoff_s": 1, "backoff_max_s": 60, "timeout_s": 10}
(relative paths are relative to the file; ca_file is optional: the system's CAs).
"""
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import pathlib
import re
import ssl
import threading
import time
import urllib.error
import urllib.request

import grpc
from google.protobuf import json_format

from cardgate.gateway.store.files import write_file
from cardgate.v1 import office_pb2, office_pb2_grpc

log = logging.getLogger("cardgate.webhooks")
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
RECONNECT_S = 1.0           # after the gateway's stream ended or failed


class ConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    secret: bytes
    ca_file: str = None


@dataclasses.dataclass(frozen=True)
class Config:
    state_dir: pathlib.Path
    endpoints: tuple
    attempts: int = 8
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    timeout_s: float = 10.0

    @classmethod
    def load(cls, path) -> "Config":
        path = pathlib.Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        base = path.parent
        endpoints = []
        for i, e in enumerate(raw.get("endpoints", [])):
            name, url = e.get("name", ""), e.get("url", "")
            if not NAME.fullmatch(name):
                raise ConfigError(f"endpoints[{i}].name: 1 to 64 letters, digits, _ or -")
            if not url.startswith("https://"):
                raise ConfigError(f"endpoints[{i}].url: must be https://")
            try:
                secret = (base / e["secret_file"]).read_bytes().strip()
            except (KeyError, OSError) as exc:
                raise ConfigError(f"endpoints[{i}].secret_file: {exc}") from None
            if len(secret) < 16:
                raise ConfigError(f"endpoints[{i}].secret_file: the secret must be 16 bytes or more")
            ca = str(base / e["ca_file"]) if e.get("ca_file") else None
            endpoints.append(Endpoint(name, url, secret, ca))
        if not endpoints:
            raise ConfigError("endpoints: name at least one")
        if len({e.name for e in endpoints}) != len(endpoints):
            raise ConfigError("endpoints: names must differ")
        numbers = {k: raw[k] for k in ("attempts", "backoff_s", "backoff_max_s", "timeout_s") if k in raw}
        if any(not isinstance(v, (int, float)) or v <= 0 for v in numbers.values()):
            raise ConfigError("attempts, backoff_s, backoff_max_s, timeout_s: positive numbers")
        return cls(base / raw.get("state_dir", "webhooks-state"), tuple(endpoints), **numbers)


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The X-Cardgate-Signature header of a body sent at `timestamp`."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, header: str, body: bytes) -> bool:
    """Whether a receiver's X-Cardgate-Signature header is this body's under the secret."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        return hmac.compare_digest(signature(secret, int(parts["t"]), body), header)
    except (KeyError, ValueError):
        return False


class Cursor:
    """An endpoint's cursor: a file holding the last seq it has done with."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def read(self) -> int:
        try:
            return int(self.path.read_text())
        except FileNotFoundError:
            return 0

    def write(self, seq: int):
        write_file(self.path, str(seq).encode(), private=False)


class EndpointRelay:
    """One endpoint's delivery loop."""

    def __init__(self, config: Config, endpoint: Endpoint, channel, stop: threading.Event):
        self.config, self.endpoint, self.stop = config, endpoint, stop
        self.stub = office_pb2_grpc.OfficeServiceStub(channel)
        self.cursor = Cursor(config.state_dir / f"{endpoint.name}.cursor")
        self.dead_letters = config.state_dir / f"{endpoint.name}.dead-letter.jsonl"
        self.context = ssl.create_default_context(cafile=endpoint.ca_file)

    def run(self):
        self.stream = None
        threading.Thread(target=self._cancel_on_stop, daemon=True).start()
        while not self.stop.is_set():
            after = self.cursor.read()
            stream = self.stream = self.stub.WatchEvents(office_pb2.WatchEventsRequest(after_seq=after))
            try:
                for event in stream:
                    self._deliver(event)
                    self.cursor.write(event.seq)
                    if self.stop.is_set():
                        break
            except grpc.RpcError as exc:
                if self.stop.is_set():
                    break
                log.warning("webhooks %s: the event stream ended (%s); reconnecting",
                            self.endpoint.name, exc.code().name)
            finally:
                stream.cancel()
            self.stop.wait(RECONNECT_S)

    def _cancel_on_stop(self):
        """Wakes the delivery loop out of a stream waiting for events once stop is set."""
        self.stop.wait()
        if self.stream is not None:
            self.stream.cancel()

    def _deliver(self, event):
        body = json.dumps(json_format.MessageToDict(event, preserving_proto_field_name=True),
                          separators=(",", ":"), sort_keys=True).encode()
        delay, error = self.config.backoff_s, ""
        for attempt in range(1, int(self.config.attempts) + 1):
            error = self._post(event.event_id, body)
            if not error:
                return
            log.info("webhooks %s: %s attempt %d failed: %s", self.endpoint.name, event.event_id,
                     attempt, error)
            if attempt < self.config.attempts and self.stop.wait(delay):
                raise InterruptedError("stopping")
            delay = min(delay * 2, self.config.backoff_max_s)
        log.warning("webhooks %s: %s dead-lettered after %d attempts: %s", self.endpoint.name,
                    event.event_id, self.config.attempts, error)
        with open(self.dead_letters, "a", encoding="utf-8") as out:
            out.write(json.dumps({"event": json.loads(body), "error": error,
                                  "time_s": int(time.time())}, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def _post(self, event_id: str, body: bytes) -> str:
        """'' when delivered, else why not."""
        request = urllib.request.Request(self.endpoint.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "X-Cardgate-Event-Id": event_id,
            "X-Cardgate-Signature": signature(self.endpoint.secret, int(time.time()), body)})
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s,
                                        context=self.context) as answer:
                return "" if 200 <= answer.status < 300 else f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return str(getattr(exc, "reason", exc))


def run(config: Config, channel, stop: threading.Event):
    """Relay every endpoint until `stop` is set."""
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    relays = [EndpointRelay(config, endpoint, channel, stop) for endpoint in config.endpoints]
    threads = [threading.Thread(target=_guarded, args=(relay,), name=f"webhooks-{relay.endpoint.name}")
               for relay in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _guarded(relay: EndpointRelay):
    try:
        relay.run()
    except InterruptedError:
        pass
