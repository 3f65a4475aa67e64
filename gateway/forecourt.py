"""ForecourtService: many authorizations in one call, committed together.

Each operation is validated and packed on its own (a bad one gets its own error), then
all valid ones go to the writer as one submission: one commit, one fsync, one answer.
"""
import queue
import threading

import grpc

from cardgate.fastcore.records import Op, Result
from cardgate.v1 import forecourt_pb2, forecourt_pb2_grpc

from . import limits
from .access import Denied
from .operations import VelocityExceeded
from .registration import Malformed
from .writer import QueueFull, WriterError
from .service import authorization_message, rpc
from .validation import InvalidArgument


def _pack(ops, kind, m):
    """The core request of one operation of a batch (raises on bad input)."""
    if kind == "purchase":
        return ops.pack_money(Op.PURCHASE, m.request_id, m.pan, m.amount.amount_minor,
                              m.amount.currency, pin_text=m.pin, partial_ok=m.partial_approval_ok)
    if kind == "preauthorize":
        return ops.pack_money(Op.PREAUTH, m.request_id, m.pan, m.amount.amount_minor,
                              m.amount.currency, pin_text=m.pin, partial_ok=m.partial_approval_ok)
    if kind == "complete":
        return ops.pack_money(Op.COMPLETE, m.request_id, m.pan, m.amount.amount_minor,
                              m.amount.currency, ref_text=m.hold_id, ref_field="hold_id",
                              allow_zero=True)
    if kind == "void":
        return ops.pack_reference(Op.VOID, m.request_id, m.hold_id, "hold_id")
    if kind == "refund":
        return ops.pack_money(Op.REFUND, m.request_id, m.pan, m.amount.amount_minor,
                              m.amount.currency, ref_text=m.original_request_id)
    if kind == "reverse":
        return ops.pack_reference(Op.REVERSAL, m.request_id, m.original_request_id,
                                  "original_request_id")
    if kind == "load":
        return ops.pack_money(Op.LOAD, m.request_id, m.pan, m.amount.amount_minor, m.amount.currency)
    raise InvalidArgument("operation", "is empty; set one of purchase, preauthorize, complete, "
                          "void, refund, reverse, load")


def _error(code: grpc.StatusCode, message: str) -> forecourt_pb2.OperationError:
    return forecourt_pb2.OperationError(code=code.value[0], message=message)


class ForecourtService(forecourt_pb2_grpc.ForecourtServiceServicer):
    SERVICE = forecourt_pb2.DESCRIPTOR.services_by_name["ForecourtService"].full_name

    def __init__(self, operations, access):
        self.ops = operations
        self.access = access

    @rpc
    def AuthorizeBatch(self, request, context):
        if not request.operations:
            raise InvalidArgument("operations", "is empty")
        if len(request.operations) > limits.FORECOURT_BATCH_OPERATIONS_MAX:
            raise InvalidArgument("operations", f"holds {len(request.operations)}; at most "
                                  f"{limits.FORECOURT_BATCH_OPERATIONS_MAX} per call")
        results = [forecourt_pb2.OperationResult() for _ in request.operations]
        packed, positions = [], []
        for i, item in enumerate(request.operations):
            kind = item.WhichOneof("operation")
            message = getattr(item, kind) if kind else None
            results[i].request_id = getattr(message, "request_id", "")
            try:
                packed.append(_pack(self.ops, kind, message))
                positions.append(i)
            except InvalidArgument as exc:
                results[i].error.CopyFrom(_error(grpc.StatusCode.INVALID_ARGUMENT,
                                                 f"operations[{i}].{exc}"))
            except VelocityExceeded as exc:
                results[i].error.CopyFrom(_error(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)))
        for i, reply in zip(positions, self.ops.submit_many(packed)):
            _fill(results[i], reply, f"operations[{i}]")
        return forecourt_pb2.AuthorizeBatchResponse(results=results)

    def AuthorizeStream(self, request_iterator, context):
        try:
            identity = self.access.check(context, f"/{self.SERVICE}/AuthorizeStream", None)
        except Denied as exc:
            context.abort(exc.code, str(exc))
        answers = queue.Queue()
        in_flight = threading.BoundedSemaphore(limits.STREAM_IN_FLIGHT_MAX)
        end = object()

        def answer(result):
            answers.put(result)
            in_flight.release()

        def read():
            count = 0
            try:
                for item in request_iterator:
                    in_flight.acquire()
                    count += 1
                    self._start(identity, item, answer)
            except grpc.RpcError:
                pass                                # the client went away
            finally:
                answers.put((end, count))

        threading.Thread(target=read, name="cardgate-stream-reader", daemon=True).start()
        answered, total = 0, None
        while total is None or answered < total:
            result = answers.get()
            if isinstance(result, tuple) and result[0] is end:
                total = result[1]
                continue
            answered += 1
            yield result

    def _start(self, identity, item, answer):
        """Validate and queue one streamed operation; `answer` gets its result later."""
        if isinstance(item, Malformed):
            return answer(forecourt_pb2.OperationResult(error=_error(
                grpc.StatusCode.INVALID_ARGUMENT, f"not a valid {item.type_name} message")))
        kind = item.WhichOneof("operation")
        message = getattr(item, kind) if kind else None
        result = forecourt_pb2.OperationResult(request_id=getattr(message, "request_id", ""))
        try:
            if message is not None:
                self.access.admit_stream_item(identity, message)
            packed = _pack(self.ops, kind, message)
        except Denied as exc:
            result.error.CopyFrom(_error(exc.code, str(exc)))
            return answer(result)
        except InvalidArgument as exc:
            result.error.CopyFrom(_error(grpc.StatusCode.INVALID_ARGUMENT, str(exc)))
            return answer(result)
        except VelocityExceeded as exc:
            result.error.CopyFrom(_error(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)))
            return answer(result)

        def committed(replies, error):
            if error is not None:
                result.error.CopyFrom(_error(grpc.StatusCode.UNAVAILABLE, str(error)))
            else:
                _fill(result, replies[0], "operation")
            answer(result)

        try:
            self.ops.writer.submit_async([packed], committed)
        except WriterError as exc:
            result.error.CopyFrom(_error(grpc.StatusCode.RESOURCE_EXHAUSTED
                                         if isinstance(exc, QueueFull) else grpc.StatusCode.UNAVAILABLE,
                                         str(exc)))
            answer(result)


def _fill(result, reply, where):
    """A committed core reply into an OperationResult (rejections become errors)."""
    if reply.result == Result.REJECTED_REQUEST_ID_REUSED:
        result.error.CopyFrom(_error(grpc.StatusCode.ALREADY_EXISTS, f"request_id "
                                     f"{result.request_id} was already used for a different request"))
    elif reply.result == Result.REJECTED_INVALID_REQUEST:
        result.error.CopyFrom(_error(grpc.StatusCode.INVALID_ARGUMENT,
                                     f"{where}: refused by the core as invalid"))
    else:
        result.authorization.CopyFrom(authorization_message(reply))
