"""Shared fixtures: hypothesis profiles, a core driven directly (core_driver), a live
gateway on loopback over mutual TLS, and the real pcscd with its virtual readers."""
import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, settings

from cardgate.gateway.api.server import Gateway
from cardgate.gateway.cli.channels import open_channel
from cardgate.v1 import authorization_pb2_grpc, fleet_pb2_grpc, issuing_pb2_grpc
from core_driver import core  # noqa: F401  (the fixture: a core driven directly)

TERMINAL_MERCHANT, TERMINAL_OUTLET = "m1", "o1"

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=400, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


class LiveGateway:
    """A real gateway in this process: real LMDB in a temp dir, real gRPC on loopback with
    mutual TLS, and one client certificate per role issued by the gateway's own CA.

    ``auth`` calls as a terminal of merchant m1 / outlet o1, ``issuing`` and ``fleet`` as
    an operator.
    """

    def __init__(self, data_dir, clock=None, **kwargs):
        # Tests drive one card hard; the velocity test sets its own limit.
        kwargs = {"card_per_minute_max": 1_000_000, **kwargs}
        if clock is not None:
            kwargs["clock"] = clock
        self.data_dir = data_dir
        self.gateway = Gateway(data_dir, "127.0.0.1:0", **kwargs).start()
        self.certs = data_dir.parent / "client-certs"
        pki = self.gateway.pki
        pki.issue("terminal", "terminal-1", self.certs, merchant_id=TERMINAL_MERCHANT,
                  outlet_id=TERMINAL_OUTLET)
        pki.issue("bureau", "bureau-1", self.certs)
        pki.issue("operator", "operator-1", self.certs)
        self.channels = []
        self.channel = self.open("terminal-1")
        self.auth = authorization_pb2_grpc.AuthorizationServiceStub(self.channel)
        operator = self.open("operator-1")
        self.issuing = issuing_pb2_grpc.IssuingServiceStub(operator)
        self.fleet = fleet_pb2_grpc.FleetServiceStub(operator)

    def open(self, name, cert_dir=None):
        channel = open_channel(self.gateway.address, cert_dir or self.certs, name)
        self.channels.append(channel)
        return channel

    def close(self):
        for channel in self.channels:
            channel.close()
        self.gateway.stop()


@pytest.fixture
def live_gateway(tmp_path):
    gw = LiveGateway(tmp_path / "data")
    yield gw
    gw.close()


@pytest.fixture(scope="session")
def pcscd():
    """The real PC/SC daemon with vpcd's two virtual readers: one already running is
    reused (only one can run per machine); else the tests start their own, in the
    foreground (never --auto-exit: it quits after a minute idle), and stop it after."""
    from cardgate.devices import pcsc
    from cardgate.devices.vpcd import READER_NAMES

    started = None
    try:
        pcsc.wait_for_readers(READER_NAMES.values(), timeout_s=0.5)
    except pcsc.PcscError:
        if shutil.which("pcscd") is None:
            pytest.fail("pcscd is not installed; ./run test installs it (Debian: pcscd vsmartcard-vpcd)")
        started = subprocess.Popen(["pcscd", "--foreground"], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pcsc.wait_for_readers(READER_NAMES.values(), timeout_s=20)
    yield READER_NAMES
    if started is not None:
        started.terminate()
        started.wait(timeout=10)
