"""Shared fixtures: hypothesis profiles, a live gateway on loopback, request ids."""
import os

import grpc
import pytest
from hypothesis import HealthCheck, settings

from cardgate.gateway.server import Gateway
from cardgate.v1 import authorization_pb2_grpc, issuing_pb2_grpc

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=400, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


class LiveGateway:
    """A real gateway in this process: real LMDB in a temp dir, real gRPC on loopback."""

    def __init__(self, data_dir, clock=None, **kwargs):
        kwargs = dict(kwargs)
        if clock is not None:
            kwargs["clock"] = clock
        self.data_dir = data_dir
        self.gateway = Gateway(data_dir, "127.0.0.1:0", **kwargs).start()
        self.channel = grpc.insecure_channel(self.gateway.address)
        self.auth = authorization_pb2_grpc.AuthorizationServiceStub(self.channel)
        self.issuing = issuing_pb2_grpc.IssuingServiceStub(self.channel)

    def close(self):
        self.channel.close()
        self.gateway.stop()


@pytest.fixture
def live_gateway(tmp_path):
    gw = LiveGateway(tmp_path / "data")
    yield gw
    gw.close()
