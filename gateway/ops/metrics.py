"""What the gateway tells Prometheus: requests and declines, latency, batches and commits,
the writer's queue, holds outstanding, the store's size, and background work.

Labels are bounded: an RPC's name, a result code's name, a kind of background work.
Never a card, never a terminal. Read-outs that cost a store read (holds outstanding, file
size, map use) are taken when Prometheus scrapes, not on the request path.
"""
import http.server
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import MetricsHandler

from cardgate.fastcore import ledger, records

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


THROTTLE_REASONS = ("rate", "operations", "admission", "velocity", "queue")
SALES = (records.Op.PURCHASE, records.Op.COMPLETE)


class Metrics:
    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("cardgate_requests", "Requests answered, by RPC, operation (the "
                                "RPC's own, or each operation of a forecourt batch or stream) and "
                                "result (a result code, 'answered' for reads, or the gRPC status of "
                                "a refusal)", ["rpc", "operation", "result"], registry=r)
        self.declines = Counter("cardgate_declines", "Declined requests, by reason (result code)",
                                ["reason"], registry=r)
        self.latency = Histogram("cardgate_request_seconds", "Time to answer a request in the "
                                 "gateway, from its arrival to its answer", ["rpc"],
                                 buckets=LATENCY_BUCKETS_S, registry=r)
        self.core_seconds = Histogram("cardgate_core_batch_seconds", "Time the core takes to apply "
                                      "one batch (before its commit)", buckets=LATENCY_BUCKETS_S,
                                      registry=r)
        self.commit_seconds = Histogram("cardgate_commit_seconds", "Time to commit one batch, "
                                        "with fsync", buckets=LATENCY_BUCKETS_S, registry=r)
        self.batch_requests = Histogram("cardgate_batch_requests", "Requests in one committed batch",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.background = Counter("cardgate_background_work", "Work the writer does on its own: "
                                  "batches that only end holds and expire lots (expiry), commits "
                                  "tried to see if the store takes them again (probe), records "
                                  "forgotten past their retention window (pruned)", ["kind"],
                                  registry=r)
        for kind in ("expiry", "probe", "pruned"):               # shown at 0 before the first
            self.background.labels(kind)
        self.throttled = Counter("cardgate_throttled", "Requests (or a batch's operations) "
                                 "refused RESOURCE_EXHAUSTED, by why: a terminal's requests/s "
                                 "(rate) or operations/s (operations), calls at once per "
                                 "certificate (admission), a card's authorizations a minute "
                                 "(velocity), the writer's queue (queue)", ["reason"], registry=r)
        for reason in THROTTLE_REASONS:                           # shown at 0 before the first
            self.throttled.labels(reason)
        # Business figures, bounded labels: currencies (ISO 4217), product codes 0-255.
        self.money_authorized = Counter("cardgate_money_authorized_minor", "Money of approved "
                                        "purchases and completions, in minor units", ["currency"],
                                        registry=r)
        self.volume_sold = Counter("cardgate_volume_ml", "Millilitres of approved sales and "
                                   "completions, by product code ('several' for a sale of more "
                                   "than one, 'none' for one naming none)", ["product"], registry=r)
        self.points = Counter("cardgate_points", "Loyalty points earned (less what returns took "
                              "back: never below 0 here) and redeemed", ["direction"], registry=r)
        for direction in ("earned", "redeemed"):
            self.points.labels(direction)
        self.commit_ok = Gauge("cardgate_store_commit_ok", "1 while the store commits, 0 while it "
                               "refuses (map or disk full, closed)", registry=r)
        self.commit_ok.set(1)
        self.queue_depth = Gauge("cardgate_writer_queue_depth", "Submissions waiting for the writer",
                                 registry=r)
        self.holds = Gauge("cardgate_holds_outstanding", "Open pre-authorizations (to be completed, "
                           "voided or ended by time)", registry=r)
        self.store_bytes = Gauge("cardgate_store_file_bytes", "Size of the LMDB data file", registry=r)
        self.map_used = Gauge("cardgate_store_map_used_ratio", "Share of the LMDB map in use "
                              "(1.0: full; grow --map-size-mib)", registry=r)

    def watch(self, writer, store):
        """Read-outs taken at scrape time from the writer and the store."""
        self.queue_depth.set_function(lambda: len(writer._pending))
        self.holds.set_function(lambda: _holds_outstanding(store))
        self.store_bytes.set_function(lambda: _file_bytes(store))
        self.map_used.set_function(lambda: _map_used(store))

    # ---- on the request path -------------------------------------------------------

    def answered(self, rpc: str, result: str, started: float, per_operation: bool = False):
        """One RPC answered; per_operation: its operations were counted one by one."""
        if not per_operation:
            self.operation(rpc, rpc, result)
        self.latency.labels(rpc).observe(time.perf_counter() - started)

    def operation(self, rpc: str, operation: str, result: str):
        self.requests.labels(rpc, operation, result).inc()
        if result.startswith(("RESULT_CODE_DECLINED", "RESULT_CODE_REJECTED")):
            self.declines.labels(result.removeprefix("RESULT_CODE_")).inc()

    def business(self, requests: list, replies: list):
        """The money, litres and points of a committed submission's approved replies."""
        for packed, reply in zip(requests, replies):
            if reply.result not in records.APPROVED_RESULTS:
                continue
            if reply.op in SALES and reply.approved_minor > 0:
                self.money_authorized.labels(reply.currency).inc(reply.approved_minor)
                if reply.volume_ml > 0:
                    products = records.unpack_request(packed).products
                    self.volume_sold.labels(str(next(iter(products))) if len(products) == 1 else
                                            "several" if products else "none").inc(reply.volume_ml)
            if reply.points_earned > 0:
                self.points.labels("earned").inc(reply.points_earned)
            if reply.points_redeemed > 0:
                self.points.labels("redeemed").inc(reply.points_redeemed)

    def batch(self, requests: int, core_s: float, commit_s: float):
        self.batch_requests.observe(requests)
        self.core_seconds.observe(core_s)
        self.commit_seconds.observe(commit_s)


def _holds_outstanding(store) -> int:
    try:
        with store.env.begin() as txn:
            return ledger.open_holds(txn, store.dbs)
    except Exception:                  # a closed store: nothing to say
        return 0


def _file_bytes(store) -> int:
    try:
        return (store.ledger_dir / "data.mdb").stat().st_size
    except OSError:
        return 0


def _map_used(store) -> float:
    try:
        info, stat = store.env.info(), store.env.stat()
    except Exception:
        return 0.0
    return (info["last_pgno"] + 1) * stat["psize"] / info["map_size"]


class _OperatorsOnly(http.server.ThreadingHTTPServer):
    """HTTPS that answers only clients with an operator certificate of the gateway's CA
    (the TLS handshake already refused any other CA's)."""

    def verify_request(self, request, client_address) -> bool:
        try:
            names = request.getpeercert().get("subjectAltName", ())
        except (OSError, AttributeError):
            return False
        return any(kind == "URI" and value.startswith(OPERATOR_URI) for kind, value in names)


OPERATOR_URI = "urn:cardgate:operator"


class MetricsServer:
    """The /metrics endpoint on its own thread: plain HTTP, or, given a TLS context
    (tls_context: the server certificate, client certificates of the gateway's CA
    required), HTTPS for operators' certificates only."""

    def __init__(self, metrics: Metrics, listen: str, tls_context=None):
        host, _, port = listen.rpartition(":")
        handler = MetricsHandler.factory(metrics.registry)
        server_class = _OperatorsOnly if tls_context is not None else http.server.ThreadingHTTPServer
        self.httpd = server_class((host.strip("[]") or "127.0.0.1", int(port)), handler,
                                  bind_and_activate=False)
        try:
            self.httpd.server_bind()
            self.httpd.server_activate()
        except OSError:
            self.httpd.server_close()
            raise
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.tls = tls_context is not None
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="cardgate-metrics",
                                       daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host}:{port}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
