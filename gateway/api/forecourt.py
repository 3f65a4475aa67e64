"""ForecourtService: many authorizations in one call or one stream.

Each operation is validated and packed on its own (a bad one gets its own error); a
batch goes to the writer as one submission (one commit, one fsync, one answer), a
stream's operations join whatever batch the writer takes next.
"""
import asyncio
import collections
import contextlib
import logging
import time

import grpc

from cardgate.gateway import limits
from cardgate.gateway.api.authorization import (REFUSALS, Servicer, authorization_message,
                                                counts_operations, public_text, rpc, status_of,
                                                throttle_of)
from cardgate.gateway.api.operations import raise_rejections
from cardgate.gateway.api.registration import Malformed
from cardgate.gateway.ops.logs import log_request
from cardgate.gateway.security import acting
from cardgate.gateway.security.access import Denied
from cardgate.gateway.validation import InvalidArgument
from cardgate.v1 import common_pb2, forecourt_pb2, forecourt_pb2_grpc

log = logging.getLogger("cardgate.forecourt")


def _refuse(result, exc, prefix=""):
    result.error.CopyFrom(forecourt_pb2.OperationError(code=status_of(exc).value[0],
                                                      message=prefix + public_text(exc)))


def _fill(result, reply, store):
    """A committed core reply into an OperationResult (rejections become errors)."""
    try:
        raise_rejections(reply, result.request_id)
    except REFUSALS as exc:
        return _refuse(result, exc)
    result.authorization.CopyFrom(authorization_message(reply, store))


class _ReadyResults:
    """Results of one stream, put from any thread, taken on the event loop."""

    def __init__(self, handoff):
        self.handoff = handoff
        self.items = collections.deque()
        self.event = asyncio.Event()
        self.total = None           # operations read, once the client stopped sending

    def put(self, item):
        self.handoff.call(self._arrived, item)

    def _arrived(self, item):
        self.items.append(item)
        self.event.set()

    def end(self, count):
        self.total = count
        self.event.set()

    async def take(self) -> list:
        await self.event.wait()
        self.event.clear()
        taken = list(self.items)
        self.items.clear()
        return taken


def result_name(result) -> str:
    """An OperationResult's outcome, as metrics count it: its result code, or the gRPC
    status of its refusal."""
    if result.HasField("error"):
        return next((c.name for c in grpc.StatusCode if c.value[0] == result.error.code), "UNKNOWN")
    return common_pb2.ResultCode.Name(result.authorization.result_code)


def _committed(result, replies, error, store):
    if error is not None:
        _refuse(result, error)
    else:
        _fill(result, replies[0], store)
    return result


def _stream_items(message):
    """The operations of one stream message; a message that is not one, or holds none,
    is answered as one bad operation."""
    if isinstance(message, Malformed) or not message.operations:
        return [message if isinstance(message, Malformed) else None]
    return message.operations


def _operation(item):
    """(kind, message) of a ForecourtOperation; (None, None) when it is empty."""
    kind = item.WhichOneof("operation")
    return kind, (getattr(item, kind) if kind else None)


class ForecourtService(Servicer, forecourt_pb2_grpc.ForecourtServiceServicer):
    SERVICE = forecourt_pb2.DESCRIPTOR.services_by_name["ForecourtService"].full_name

    @rpc
    @counts_operations
    async def AuthorizeBatch(self, request, context):
        started = time.perf_counter()
        if not request.operations:
            raise InvalidArgument("operations", "is empty")
        if len(request.operations) > limits.FORECOURT_BATCH_OPERATIONS_MAX:
            raise InvalidArgument("operations", f"holds {len(request.operations)}; at most "
                                  f"{limits.FORECOURT_BATCH_OPERATIONS_MAX} per call")
        results = [forecourt_pb2.OperationResult() for _ in request.operations]
        operations = [_operation(item) for item in request.operations]
        packed, positions, throttles = [], [], [""] * len(operations)
        for i, (kind, message) in enumerate(operations):
            results[i].request_id = getattr(message, "request_id", "")
            try:
                packed.append(self.ops.pack_operation(kind, message))
                positions.append(i)
            except REFUSALS as exc:
                throttles[i] = throttle_of(exc)
                _refuse(results[i], exc, f"operations[{i}]." if isinstance(exc, InvalidArgument) else "")
        # Each operation its own submission: a fault of the core in one answers that one.
        for i, outcome in zip(positions, await self.ops.submit_each_async(packed)):
            if isinstance(outcome, Exception):
                throttles[i] = throttle_of(outcome)
                _refuse(results[i], outcome)
            else:
                _fill(results[i], outcome, self.ops.store)
        caller = acting.CALLER.get()
        for (kind, message), result, throttle in zip(operations, results, throttles):
            outcome = result_name(result)
            if self.metrics is not None:
                self.metrics.operation("AuthorizeBatch", kind or "none", outcome)
                if throttle:
                    self.metrics.throttled.labels(throttle).inc()
            log_request(caller, "AuthorizeBatch", message, outcome, started, kind or "none")
        return forecourt_pb2.AuthorizeBatchResponse(results=results)

    async def AuthorizeStream(self, request_iterator, context):
        """A coroutine on the server's event loop: operations are read, validated and
        handed to the writer without a thread of their own; the writer thread hands
        results back through a deque and one wake-up per batch, and whatever is ready
        goes out in one message. The stream holds one of its certificate's places for
        streams while open; each operation is admitted on its own (revocation included)."""
        with contextlib.ExitStack() as held:
            try:
                identity = self.access.check(context, f"/{self.SERVICE}/AuthorizeStream", None)
                held.enter_context(self.access.admission(identity, stream=True))
            except Denied as exc:
                await context.abort(exc.code, public_text(exc))
            async for response in self._stream(identity, request_iterator):
                yield response

    async def _stream(self, identity, request_iterator):
        ready = _ReadyResults(self.ops.handoff())
        in_flight = asyncio.Semaphore(limits.STREAM_IN_FLIGHT_MAX)

        async def read():
            count = 0
            try:
                async for message in request_iterator:
                    for item in _stream_items(message):
                        await in_flight.acquire()
                        count += 1
                        try:
                            self._start(identity, item, ready.put)
                        except Exception:       # a bug: answer it, keep the stream
                            log.exception("stream operation failed before the writer")
                            ready.put(forecourt_pb2.OperationResult(error=forecourt_pb2.OperationError(
                                code=grpc.StatusCode.INTERNAL.value[0],
                                message="internal error; nothing was applied")))
            except (grpc.RpcError, asyncio.CancelledError):
                pass                                # the client went away
            finally:
                ready.end(count)

        reader = asyncio.get_running_loop().create_task(read())
        answered = 0
        try:
            while ready.total is None or answered < ready.total:
                results = []
                for result in await ready.take():
                    if isinstance(result, tuple):
                        result = _committed(*result, self.ops.store)
                    results.append(result)
                    in_flight.release()
                if results:
                    answered += len(results)
                    if self.metrics is not None:
                        for result in results:
                            self.metrics.operation("AuthorizeStream", "any", result_name(result))
                    yield forecourt_pb2.AuthorizeStreamResponse(results=results)
        finally:
            reader.cancel()

    def _start(self, identity, item, answer):
        """Validate and queue one streamed operation; `answer` gets its result later."""
        result = forecourt_pb2.OperationResult()
        if isinstance(item, Malformed):
            _refuse(result, InvalidArgument("operation", f"not a valid {item.type_name} message"))
            return answer(result)
        if item is None:
            _refuse(result, InvalidArgument("operations", "is empty: send at least one operation"))
            return answer(result)
        kind, message = _operation(item)
        result.request_id = getattr(message, "request_id", "")
        try:
            if message is not None:
                self.access.admit_stream_item(identity, message)
            packed = self.ops.pack_operation(kind, message)
        except REFUSALS as exc:
            _refuse(result, exc)
            return answer(result)

        def committed(replies, error):
            # On the writer thread: hand over; the answer is built on the event loop, so
            # that the writer goes on to the next batch at once.
            answer((result, replies, error))

        try:
            self.ops.writer.submit_async([packed], committed)
        except REFUSALS as exc:
            _refuse(result, exc)
            answer(result)
