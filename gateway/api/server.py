"""The gateway process: store, group-commit writer and the gRPC server around them.

grpc.aio on one event-loop thread: authorizations and the forecourt batch and stream are
coroutines (no thread handoffs per message; the writer wakes the loop once per commit);
every other RPC handler is plain code run in a thread pool, after its call was admitted
on the loop (see README, "Performance"; access.AccessControl.admission).
Besides cardgate.v1 it serves the standard gRPC health service and server reflection.
Mutual TLS with the gateway's own CA is the default; without TLS it only serves loopback.
"""
import asyncio
import concurrent.futures
import logging
import socket
import threading
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cardgate.gateway import limits
from cardgate.gateway.api.authorization import AuthorizationService, IssuingService
from cardgate.gateway.api.fleet import FleetService
from cardgate.gateway.api.forecourt import ForecourtService
from cardgate.gateway.api.loyalty import LoyaltyService
from cardgate.gateway.api.office import OfficeService
from cardgate.gateway.api.operations import Operations
from cardgate.gateway.api.registration import SERVICES, register
from cardgate.gateway.iso8583.listener import IsoListener
from cardgate.gateway.issuing.jobs import PersonalizationJobs
from cardgate.gateway.netaddr import host_of, is_loopback
from cardgate.gateway.ops.metrics import Metrics, MetricsServer
from cardgate.gateway.security.access import AccessControl
from cardgate.gateway.security.pki import Pki, RevocationList
from cardgate.gateway.store import retention
from cardgate.gateway.store.node import ReplicatedNode
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import BatchingWriter

log = logging.getLogger("cardgate.server")

SERVICE_NAMES = tuple(service.full_name for service in SERVICES)
LIVENESS_SERVICE = "cardgate.liveness"   # health name that only says the process answers

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", limits.MESSAGE_BYTES_MAX),
    ("grpc.max_send_message_length", limits.MESSAGE_BYTES_MAX),
    # Calls at once on one connection: a client's excess waits on its own side, never in
    # the server's queue of calls not yet handed to a handler (which gRPC, when it grows
    # too long, drains by cancelling whoever's calls arrive: another terminal's too).
    ("grpc.max_concurrent_streams", limits.STREAMS_PER_CONNECTION_MAX),
    ("grpc.http.overload_protection", 0),
]


async def _cancel_other_tasks():
    """What grpc.aio leaves after its server stopped (calls it cancelled) ends here, so
    that closing the loop destroys no pending task."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class InsecureRefused(ValueError):
    pass


def server_hosts(listen: str) -> tuple:
    """What the server certificate names: loopback, plus the listen host (or this
    machine's name when listening on every address)."""
    host = host_of(listen)
    extra = (socket.gethostname(),) if host in ("", "0.0.0.0", "::") else (host,)
    return ("localhost", "127.0.0.1", "::1") + extra


class Gateway:
    """Everything one serving process owns. ``start`` binds; ``stop`` drains and closes."""

    def __init__(self, data_dir, listen="127.0.0.1:50051", *, tls=True,
                 clock=lambda: int(time.time()), map_size_bytes=limits.MAP_SIZE_BYTES_DEFAULT,
                 threads=limits.SERVER_THREADS,
                 terminal_rate_per_s=limits.TERMINAL_REQUESTS_PER_S_MAX,
                 terminal_burst=limits.TERMINAL_REQUESTS_BURST_MAX,
                 card_per_minute_max=limits.CARD_AUTHORIZATIONS_PER_MINUTE_MAX,
                 hold_timeout_s=limits.HOLD_TIMEOUT_S_DEFAULT,
                 writer_idle_tick_s=limits.WRITER_IDLE_TICK_S, metrics_listen=None,
                 reuse_port=False, calls_per_certificate=limits.CALLS_PER_CERTIFICATE_MAX,
                 streams_per_certificate=limits.STREAMS_PER_CERTIFICATE_MAX,
                 replicate=None, node_id=None, lease_ttl_s=None, group=None,
                 stream_window=None, retention_windows=retention.Windows(),
                 iso8583_listen=None, iso8583_profile="1987"):
        if not tls and not is_loopback(listen):
            raise InsecureRefused(
                f"refusing to serve without TLS on {listen}: the development mode without "
                "TLS is only for loopback addresses (127.0.0.1, ::1, localhost)")
        if iso8583_listen and not tls and not is_loopback(iso8583_listen):
            raise InsecureRefused(f"refusing ISO 8583 on {iso8583_listen} without TLS: the "
                                  "development mode without TLS is only for loopback addresses")
        if metrics_listen and not tls and not is_loopback(metrics_listen):
            raise InsecureRefused(f"refusing to serve metrics on {metrics_listen} without TLS: "
                                  "off loopback they are HTTPS for operators' certificates")
        # SO_REUSEPORT only for the workers of `serve --workers` (workers.py); otherwise a
        # port another process holds is an error, not a silent share.
        self.grpc_options = GRPC_OPTIONS + [("grpc.so_reuseport", int(reuse_port))]
        self.tls = tls
        self.pki = Pki(data_dir)
        self.pki_created = tls and self.pki.ensure(server_hosts(listen))
        self.store = Store(data_dir, map_size_bytes=map_size_bytes)
        # Counted only when served: "host:port" of /metrics, or None (no metrics at all).
        self.metrics_listen = metrics_listen
        self.metrics = Metrics() if metrics_listen else None
        self.metrics_server = None
        self.writer = BatchingWriter(self.store, clock=clock, hold_timeout_s=hold_timeout_s,
                                     idle_tick_s=writer_idle_tick_s, metrics=self.metrics,
                                     on_commit_state=self._commit_state,
                                     retention_windows=retention_windows)
        if self.metrics is not None:
            self.metrics.watch(self.writer, self.store)
        self.operations = Operations(self.store, self.writer, clock=clock,
                                     card_per_minute_max=card_per_minute_max)
        self.access = AccessControl(tls=tls, revocations=RevocationList(self.pki) if tls else None,
                                    terminal_rate_per_s=terminal_rate_per_s,
                                    terminal_burst=terminal_burst,
                                    calls_per_certificate=calls_per_certificate,
                                    streams_per_certificate=streams_per_certificate)
        self.access.card_ranges = (self.operations.range_of_pan, self.operations.range_of_card_id)
        # Replicated (replicate: NATS server URLs): a node of a group that follows the
        # stream and takes over as primary when the lease is free (store/node.py).
        self.replicate = replicate
        self.node_id = node_id or socket.gethostname()
        self.lease_ttl_s = lease_ttl_s
        self.group = group
        self.stream_window = stream_window      # (max age s, max bytes), or the default
        self.node = None
        # ISO 8583 beside gRPC (iso8583/listener.py): "host:port", or None.
        self.iso8583 = IsoListener(self.operations, self.access, self.pki, iso8583_listen,
                                   iso8583_profile, tls, self.metrics) if iso8583_listen else None
        self.listen = listen
        self.threads = threads
        self.server = None
        self.port = None
        self.health = health.HealthServicer()
        self._loop = None
        self._loop_thread = None

    def _in_loop(self, coroutine, timeout_s=None):
        """Run a coroutine on the server's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def start(self):
        self.writer.start()
        if self.replicate:
            options = {"lease_ttl_s": self.lease_ttl_s} if self.lease_ttl_s else {}
            if self.group:
                options["group"] = self.group
            if self.stream_window:
                options["stream_max_age_s"], options["stream_max_bytes"] = self.stream_window
            self.node = ReplicatedNode(self.store, self.writer, self.replicate, self.node_id,
                                       **options).start()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever,
                                             name="cardgate-grpc-loop", daemon=True)
        self._loop_thread.start()
        try:
            self._in_loop(self._start_server())
            if self.iso8583 is not None:
                self._in_loop(self.iso8583.start())
            if self.metrics_listen:
                self.metrics_server = MetricsServer(self.metrics, self.metrics_listen,
                                                    self._metrics_tls())
        except BaseException:
            if self.server is not None:
                self._in_loop(self.server.stop(0))
            self._stop_loop()
            self.writer.stop()
            self.store.close()
            raise
        self._commit_state(True)
        if self.metrics_server is not None:
            log.info("metrics on %s://%s/metrics", "https" if self.metrics_server.tls else "http",
                     self.metrics_server.address)
        log.info("listening on %s", self.address)
        return self

    def _metrics_tls(self):
        """Metrics off loopback are served over TLS to operators' certificates only; on
        loopback, plain HTTP (for a local Prometheus agent)."""
        return None if is_loopback(self.metrics_listen) else self.pki.tls_server_context()

    def _commit_state(self, ok: bool):
        """Readiness ("" and each service) follows the store: NOT_SERVING while it cannot
        commit. Liveness (LIVENESS_SERVICE) stays SERVING while the process answers."""
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("",) + SERVICE_NAMES:
            self.health.set(name, status)
        self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)

    async def _start_server(self):
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.threads,
                                                     thread_name_prefix="cardgate-rpc")
        self.server = grpc.aio.server(pool, options=self.grpc_options)
        servicers = (AuthorizationService(self.operations, self.access),
                     IssuingService(self.operations, self.access,
                                    PersonalizationJobs(self.operations, self.pki)),
                     ForecourtService(self.operations, self.access),
                     FleetService(self.operations, self.access),
                     LoyaltyService(self.operations, self.access),
                     OfficeService(self.operations, self.access))
        for servicer in servicers:
            servicer.metrics = self.metrics
            servicer.executor = pool
            register(self.server, servicer)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            SERVICE_NAMES + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                             reflection.SERVICE_NAME), self.server)
        try:
            if self.tls:
                key, cert, ca = self.pki.server_credentials_material()
                self.port = self.server.add_secure_port(self.listen, grpc.ssl_server_credentials(
                    [(key, cert)], root_certificates=ca, require_client_auth=True))
            else:
                self.port = self.server.add_insecure_port(self.listen)
        except RuntimeError:            # grpcio raises when the port cannot be bound
            self.port = 0
        if not self.port:
            raise OSError(f"cannot listen on {self.listen}: is another gateway using that port?")
        await self.server.start()

    @property
    def address(self):
        host = self.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def stop(self):
        self.health.enter_graceful_shutdown()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.iso8583 is not None and self.iso8583.server is not None:
            self._in_loop(self.iso8583.stop(), limits.GRACE_S_ON_STOP)
        if self.server is not None:
            self._in_loop(self.server.stop(limits.GRACE_S_ON_STOP))
        if self.node is not None:
            self.node.stop()
        self.writer.stop()          # answers what it still holds, through the running loop
        self._stop_loop()
        self.store.close()

    def _stop_loop(self):
        if self._loop is not None:
            try:
                self._in_loop(_cancel_other_tasks(), limits.GRACE_S_ON_STOP)
            except (TimeoutError, concurrent.futures.TimeoutError):
                log.warning("tasks still running after the server stopped; closing anyway")
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join()
            self._loop.close()
            self._loop = None

    def wait(self):
        self._in_loop(self.server.wait_for_termination())
