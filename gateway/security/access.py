"""Who may call what: authentication by client certificate, roles per RPC (declared in
the wire contract with the cardgate.v1.allowed_roles option), a terminal's binding to
its merchant and outlet, and each terminal's request-rate limit.
"""
import contextlib
import functools
import threading
import time

import grpc
from cryptography import x509

from cardgate.gateway import limits
from cardgate.gateway.api.registration import SERVICES
from cardgate.gateway.security import scope
from cardgate.gateway.security.pki import Identity, PkiError, identity_of
from cardgate.v1 import access_pb2


def _allowed_roles() -> dict:
    table = {}
    for service in SERVICES:
        for method in service.methods:
            roles = frozenset(method.GetOptions().Extensions[access_pb2.allowed_roles])
            assert roles, f"{method.full_name} declares no allowed_roles"
            table[f"/{service.full_name}/{method.name}"] = roles
    return table


ALLOWED_ROLES = _allowed_roles()


class Refused(Exception):
    """A call answered with a gRPC status of its own (e.g. NOT_FOUND for a card not
    known): raised where the answer is decided, answered by the rpc decorator."""
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class Denied(Refused):
    """Refused by access control (authentication, role, binding, limits): logged, with
    the identity refused when the certificate was read (`identity`)."""

    def __init__(self, code: grpc.StatusCode, message: str, identity=None, throttle: str = ""):
        super().__init__(code, message)
        self.identity = identity
        self.throttle = throttle        # a throttling refusal: "rate", "operations", "admission"


@functools.lru_cache(maxsize=limits.IDENTITY_CACHE_ENTRIES_MAX)
def _identity_from_pem(pem: bytes) -> Identity:
    return identity_of(x509.load_pem_x509_certificate(pem))


class TokenBucket:
    """rate_per_s tokens a second, at most burst saved up."""
    __slots__ = ("tokens", "stamp")

    def __init__(self, burst):
        self.tokens = burst
        self.stamp = time.monotonic()


class AccessControl:
    def __init__(self, *, tls: bool, revocations=None,
                 terminal_rate_per_s: float = limits.TERMINAL_REQUESTS_PER_S_MAX,
                 terminal_burst: int = limits.TERMINAL_REQUESTS_BURST_MAX,
                 operations_per_s: float = limits.TERMINAL_OPERATIONS_PER_S_MAX,
                 operations_burst: int = limits.TERMINAL_OPERATIONS_BURST_MAX,
                 calls_per_certificate: int = limits.CALLS_PER_CERTIFICATE_MAX,
                 streams_per_certificate: int = limits.STREAMS_PER_CERTIFICATE_MAX):
        self.tls = tls
        self.revocations = revocations
        self.terminal_rate_per_s = terminal_rate_per_s
        self.terminal_burst = terminal_burst
        self.operations_per_s = max(operations_per_s, terminal_rate_per_s)
        self.operations_burst = max(operations_burst, terminal_burst)
        self.calls_per_certificate = calls_per_certificate
        self.streams_per_certificate = streams_per_certificate
        # (range of a PAN, range of a card id): how scoped operators' calls are placed
        # (set by the server once the store is open).
        self.card_ranges = (lambda pan: None, lambda card_id: None)
        self._buckets = {}
        self._open = {}                 # serial -> [calls open, streams among them]
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def admission(self, identity, stream: bool = False):
        """Hold one of the identity's places for calls at once (and for streams) while
        the call runs; none free: RESOURCE_EXHAUSTED for this call alone, decided on the
        event loop before any of its work is queued, so that one client's flood never
        takes the places of others. Without TLS (identity None): no bound."""
        if identity is None:
            yield
            return
        with self._lock:
            counts = self._open.setdefault(identity.serial, [0, 0])
            if counts[0] >= self.calls_per_certificate or \
                    (stream and counts[1] >= self.streams_per_certificate):
                if counts == [0, 0]:
                    del self._open[identity.serial]
                what = f"{self.streams_per_certificate} streams" if stream and \
                    counts[1] >= self.streams_per_certificate else f"{self.calls_per_certificate} calls"
                raise Denied(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"{identity.describe()} has {what} open at once, its most; "
                             "wait for answers, then retry with the same request_id",
                             identity, "admission")
            counts[0] += 1
            counts[1] += stream
        try:
            yield
        finally:
            with self._lock:
                counts[0] -= 1
                counts[1] -= stream
                if counts == [0, 0]:
                    del self._open[identity.serial]

    def caller(self, context):
        """The caller's identity; None in the loopback development mode without TLS."""
        if not self.tls:
            return None
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            raise Denied(grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required")
        try:
            identity = _identity_from_pem(pems[0])
        except (PkiError, ValueError, x509.InvalidVersion) as exc:
            raise Denied(grpc.StatusCode.UNAUTHENTICATED, f"client certificate refused: {exc}") from None
        self.still_valid(identity)
        return identity

    def still_valid(self, identity: Identity):
        """Refuse a certificate revoked or expired since its connection was made (a
        connection, and a stream on it, may stay open for hours)."""
        if self.revocations is not None and self.revocations.is_revoked(identity.serial):
            raise Denied(grpc.StatusCode.UNAUTHENTICATED,
                         f"certificate {identity.serial:x} has been revoked")
        if time.time() > identity.not_after_s:
            raise Denied(grpc.StatusCode.UNAUTHENTICATED,
                         f"certificate {identity.serial:x} has expired; renew it "
                         "(cardgate pki renew)")

    def check(self, context, method: str, request):
        """Authenticate, authorize the role for the method, bind a terminal to its outlet
        (filling an empty acceptor from the certificate) and apply its rate limit."""
        identity = self.caller(context)
        if identity is None:
            return None
        roles = ALLOWED_ROLES[method]
        if identity.role not in roles:
            raise Denied(grpc.StatusCode.PERMISSION_DENIED,
                         f"{identity.describe()} may not call {method}; "
                         f"allowed: {', '.join(sorted(roles))}", identity)
        if identity.scoped:
            refusal = scope.refusal(identity, method, request, *self.card_ranges)
            if refusal:
                raise Denied(grpc.StatusCode.PERMISSION_DENIED, refusal, identity)
        if identity.role == "terminal":
            # A forecourt batch speaks for each of its operations; anything else for itself.
            operations = getattr(request, "operations", None)
            items = [request] if operations is None else \
                [getattr(op, op.WhichOneof("operation")) for op in operations if op.WhichOneof("operation")]
            for item in items:
                self._bind_acceptor(identity, item)
            self._rate_limit(identity, 1, max(1, len(items)))
        return identity

    def admit_stream_item(self, identity, operation_message):
        """One operation of a stream: its certificate must still be valid (not revoked
        since the stream opened), and a terminal's binding and rate limit apply."""
        if identity is not None:
            self.still_valid(identity)
        if identity is not None and identity.role == "terminal":
            self._bind_acceptor(identity, operation_message)
            self._rate_limit(identity)

    @staticmethod
    def _bind_acceptor(identity: Identity, request):
        acceptor = getattr(request, "acceptor", None)
        if acceptor is None:
            return
        for field, bound in (("merchant_id", identity.merchant_id), ("outlet_id", identity.outlet_id)):
            named = getattr(acceptor, field)
            if named and named != bound:
                raise Denied(grpc.StatusCode.PERMISSION_DENIED,
                             f"acceptor.{field}: {identity.describe()} may not act for {named!r}")
            setattr(acceptor, field, bound)

    def _rate_limit(self, identity: Identity, requests: int = 1, operations: int = 1):
        """A terminal's requests a second (a forecourt batch is one request) and,
        separately, its operations a second (each of a batch's)."""
        now = time.monotonic()
        with self._lock:
            buckets = self._buckets.get(identity.serial)
            if buckets is None:
                if len(self._buckets) >= limits.TERMINALS_TRACKED_MAX:
                    self._buckets.clear()   # bounded memory; buckets refill anyway
                buckets = self._buckets[identity.serial] = (
                    TokenBucket(self.terminal_burst), TokenBucket(self.operations_burst))
            limited = ((buckets[0], requests, self.terminal_rate_per_s, self.terminal_burst,
                        "requests", "rate"),
                       (buckets[1], operations, self.operations_per_s, self.operations_burst,
                        "operations", "operations"))
            for bucket, wanted, rate, burst, _, _ in limited:
                bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
                bucket.stamp = now
            for bucket, wanted, rate, burst, what, throttle in limited:
                if bucket.tokens < wanted:
                    raise Denied(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"{identity.describe()} is over its limit of {rate:g} {what}/s; "
                                 "slow down and retry with the same request_id", identity, throttle)
            for bucket, wanted, *_ in limited:
                bucket.tokens -= wanted
