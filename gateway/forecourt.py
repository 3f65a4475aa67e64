"""ForecourtService: many authorizations in one call or one stream.

Each operation is validated and packed on its own (a bad one gets its own error); a
batch goes to the writer as one submission (one commit, one fsync, one answer), a
stream's operations join whatever batch the writer takes next.
"""
import queue
import threading

import grpc

from cardgate.v1 import forecourt_pb2, forecourt_pb2_grpc

from . import limits
from .access import Denied
from .operations import raise_rejections
from .registration import Malformed
from .service import REFUSALS, Servicer, authorization_message, rpc, status_of
from .validation import InvalidArgument


def _refuse(result, exc, prefix=""):
    result.error.CopyFrom(forecourt_pb2.OperationError(code=status_of(exc).value[0],
                                                      message=prefix + str(exc)))


def _fill(result, reply):
    """A committed core reply into an OperationResult (rejections become errors)."""
    try:
        raise_rejections(reply, result.request_id)
    except REFUSALS as exc:
        return _refuse(result, exc)
    result.authorization.CopyFrom(authorization_message(reply))


def _committed(result, replies, error):
    if error is not None:
        _refuse(result, error)
    else:
        _fill(result, replies[0])
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
    def AuthorizeBatch(self, request, context):
        if not request.operations:
            raise InvalidArgument("operations", "is empty")
        if len(request.operations) > limits.FORECOURT_BATCH_OPERATIONS_MAX:
            raise InvalidArgument("operations", f"holds {len(request.operations)}; at most "
                                  f"{limits.FORECOURT_BATCH_OPERATIONS_MAX} per call")
        results = [forecourt_pb2.OperationResult() for _ in request.operations]
        packed, positions = [], []
        for i, item in enumerate(request.operations):
            kind, message = _operation(item)
            results[i].request_id = getattr(message, "request_id", "")
            try:
                packed.append(self.ops.pack_operation(kind, message))
                positions.append(i)
            except REFUSALS as exc:
                _refuse(results[i], exc, f"operations[{i}]." if isinstance(exc, InvalidArgument) else "")
        for i, reply in zip(positions, self.ops.submit_many(packed)):
            _fill(results[i], reply)
        return forecourt_pb2.AuthorizeBatchResponse(results=results)

    def AuthorizeStream(self, request_iterator, context):
        try:
            identity = self.access.check(context, f"/{self.SERVICE}/AuthorizeStream", None)
        except Denied as exc:
            context.abort(exc.code, str(exc))
        answers = queue.SimpleQueue()
        in_flight = threading.BoundedSemaphore(limits.STREAM_IN_FLIGHT_MAX)
        end = object()

        def answer(result):
            answers.put(result)
            in_flight.release()

        def read():
            count = 0
            try:
                for message in request_iterator:
                    for item in _stream_items(message):
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
            # Everything answered by now goes out in one message: one send per commit,
            # not per operation.
            ready = [answers.get()]
            while True:
                try:
                    ready.append(answers.get_nowait())
                except queue.Empty:
                    break
            results = []
            for result in ready:
                if isinstance(result, tuple):
                    if result[0] is end:
                        total = result[1]
                        continue
                    result = _committed(*result)
                results.append(result)
            if results:
                answered += len(results)
                yield forecourt_pb2.AuthorizeStreamResponse(results=results)

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
            # On the writer thread: hand over, and build the answer on the stream's own
            # thread, so that the writer goes on to the next batch at once.
            answer((result, replies, error))

        try:
            self.ops.writer.submit_async([packed], committed)
        except REFUSALS as exc:
            _refuse(result, exc)
            answer(result)
