"""Fair admission: a terminal flooding the gateway with thousands of calls at once, over
several connections, from a process of its own, gets RESOURCE_EXHAUSTED for its own
excess (its certificate's calls at once are bounded; each connection's streams too, the
rest waiting on its own side), and another terminal, from another process, has every
call answered meanwhile."""
import json
import pathlib
import subprocess
import sys
import time

import grpc

from cardgate.gateway.cli.demo import DEMO_MERCHANT_ID, clients_dir, read_demo_pans
from cardgate.gateway.security.pki import Pki
from cardgate.v1 import authorization_pb2, authorization_pb2_grpc, common_pb2

from gateway_process import LIMITS_LIFTED, GatewayProcess
from helpers import eur, new_id

FLOOD_CALLS_AT_ONCE = 5000
FLOOD_CONNECTIONS = 8
FLOOD_SECONDS = 8
OTHER_CALLS = 150
CALLS_PER_CERTIFICATE = 8      # low, so that the flood reaches it on this small machine


def test_a_flooding_terminal_gets_its_own_refusals_and_others_are_all_served(tmp_path):
    data_dir = tmp_path / "data"
    gateway = GatewayProcess(data_dir, *LIMITS_LIFTED, "--calls-per-certificate",
                             str(CALLS_PER_CERTIFICATE))
    try:
        certs = clients_dir(data_dir)
        pki = Pki(data_dir)
        pki.issue("terminal", "flooder", certs, merchant_id=DEMO_MERCHANT_ID, outlet_id="o-flood")
        pan, other_pan = read_demo_pans(data_dir)[:2]
        flooder = subprocess.Popen(
            [sys.executable, "-m", "flood_client", gateway.address, str(certs), "flooder", pan,
             str(FLOOD_CALLS_AT_ONCE), str(FLOOD_SECONDS), str(FLOOD_CONNECTIONS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=str(pathlib.Path(__file__).parent))
        assert flooder.stdout.readline().strip() == "flooding", flooder.stderr.read()
        time.sleep(1.0)                     # the flood is under way
        failures, answered = [], 0
        with gateway.channel() as channel:
            stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
            started = time.monotonic()
            while answered + len(failures) < OTHER_CALLS:
                try:
                    if answered % 3:
                        stub.GetBalance(authorization_pb2.GetBalanceRequest(pan=other_pan),
                                        timeout=10)
                    else:
                        sale = stub.Purchase(authorization_pb2.PurchaseRequest(
                            request_id=new_id(), pan=other_pan, amount=eur(1)), timeout=10)
                        assert sale.authorization.result_code == common_pb2.RESULT_CODE_APPROVED
                    answered += 1
                except grpc.RpcError as exc:
                    failures.append(exc.code().name)
            elapsed = time.monotonic() - started
        out, err = flooder.communicate(timeout=120)
        flood = json.loads(out.strip().splitlines()[-1])["codes"]
    finally:
        gateway.stop()
    assert failures == [], failures
    assert answered == OTHER_CALLS and elapsed < FLOOD_SECONDS + 60
    # The flooder's excess was refused as such, before any work; nothing was cancelled.
    assert flood.get("RESOURCE_EXHAUSTED", 0) > 0, flood
    assert set(flood) <= {"OK", "RESOURCE_EXHAUSTED"}, flood
