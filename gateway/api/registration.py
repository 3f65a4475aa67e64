"""Registers the cardgate.v1 servicers with request parsing that never fails the call.

grpcio answers INTERNAL when a request's bytes do not parse; here a malformed message
becomes a Malformed value, which the servicer wrapper answers with INVALID_ARGUMENT.
"""
import grpc
from google.protobuf import message, message_factory

from cardgate.v1 import (authorization_pb2, fleet_pb2, forecourt_pb2, issuing_pb2, loyalty_pb2,
                         office_pb2)

# Every cardgate.v1 service, by its descriptor: registered, reflected, role-checked.
SERVICES = tuple(service for module in (authorization_pb2, issuing_pb2, forecourt_pb2,
                                                 fleet_pb2, loyalty_pb2, office_pb2)
                 for service in module.DESCRIPTOR.services_by_name.values())


class Malformed:
    """Bytes that are not a valid message of the method's request type."""
    __slots__ = ("type_name", "problem")

    def __init__(self, type_name: str, problem: str):
        self.type_name = type_name
        self.problem = problem


def _tolerant_parser(request_class):
    def parse(data: bytes):
        try:
            return request_class.FromString(data)
        except (message.DecodeError, ValueError, RecursionError) as exc:
            return Malformed(request_class.DESCRIPTOR.full_name, type(exc).__name__)
    return parse


def register(server, servicer):
    """Register a servicer under the cardgate.v1 service its SERVICE attribute names."""
    service_descriptor = next(s for s in SERVICES if s.full_name == servicer.SERVICE)
    handlers = {}
    for method in service_descriptor.methods:
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        make = {(False, False): grpc.unary_unary_rpc_method_handler,
                (False, True): grpc.unary_stream_rpc_method_handler,
                (True, True): grpc.stream_stream_rpc_method_handler}[
            (method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=_tolerant_parser(request_class),
            response_serializer=response_class.SerializeToString)
    server.add_registered_method_handlers(service_descriptor.full_name, handlers)
