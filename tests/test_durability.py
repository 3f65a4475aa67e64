"""A gateway killed with SIGKILL under load keeps every acknowledged operation, and
holds nothing that was never sent; the unanswered in-flight ones are whole or absent."""
import random
import threading
import time

import grpc
import pytest

from cardgate.fastcore import records
from cardgate.gateway.cli.demo import DEMO_LOADS_MINOR, read_demo_pans
from cardgate.gateway.store.store import Store
from cardgate.v1 import authorization_pb2, authorization_pb2_grpc, common_pb2

from gateway_process import GatewayProcess
from helpers import eur, new_id

CLIENT_THREADS = 6

pytestmark = pytest.mark.slow


def test_acknowledged_loads_survive_sigkill_and_unacknowledged_are_whole_or_absent(tmp_path):
    data_dir = tmp_path / "data"
    # One card takes all the load here: lift its velocity limit.
    gateway = GatewayProcess(data_dir, "--card-per-minute", "1000000")
    pan = read_demo_pans(data_dir)[0]
    acknowledged = {}          # request id -> the answer the client saw
    sent = set()
    stop = threading.Event()
    lock = threading.Lock()

    def client():
        with gateway.channel() as channel:
            stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
            while not stop.is_set():
                rid = new_id()
                with lock:
                    sent.add(rid)
                try:
                    answer = stub.LoadValue(authorization_pb2.LoadValueRequest(
                        request_id=rid, pan=pan, amount=eur(1_00)), timeout=5)
                except grpc.RpcError:
                    return            # the gateway is gone
                assert answer.authorization.result_code == common_pb2.RESULT_CODE_APPROVED
                with lock:
                    acknowledged[rid] = answer.authorization

    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    for t in threads:
        t.start()
    time.sleep(random.uniform(1.0, 2.0))
    with lock:
        acknowledged_before_kill = len(acknowledged)
    gateway.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert acknowledged_before_kill > 20, "the load never got going"

    # What is on disk after the crash, read with the gateway down.
    store = Store(data_dir, readonly=True)
    with store.env.begin() as txn:
        posted = {}
        for _, value in txn.cursor(db=store.db_journal):
            entry = records.unpack_journal_entry(value)
            if entry.op == records.Op.LOAD:
                posted[entry.request_id] = entry
    store.close()
    import uuid
    posted_ids = {str(uuid.UUID(bytes=rid)) for rid in posted}
    demo_loads = len(posted_ids - sent)
    assert demo_loads == len(DEMO_LOADS_MINOR)           # the demo cards' first loads
    assert set(acknowledged) <= posted_ids               # nothing acknowledged was lost
    unanswered_but_applied = (posted_ids & sent) - set(acknowledged)
    assert len(unanswered_but_applied) <= CLIENT_THREADS  # at most one in flight per client

    # Restart on the same directory: every acknowledged answer is still the answer.
    gateway = GatewayProcess(data_dir, "--card-per-minute", "1000000")
    try:
        with gateway.channel() as channel:
            stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
            for rid, answer in acknowledged.items():
                again = stub.LoadValue(authorization_pb2.LoadValueRequest(
                    request_id=rid, pan=pan, amount=eur(1_00)), timeout=5)
                assert again.authorization == answer
            # an in-flight request retried now takes effect exactly once
            for rid in sorted(sent - set(acknowledged)):
                stub.LoadValue(authorization_pb2.LoadValueRequest(
                    request_id=rid, pan=pan, amount=eur(1_00)), timeout=5)
            final = stub.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan), timeout=5)
        assert final.balance.balance_minor == 100_00 + len(sent) * 1_00
    finally:
        assert gateway.stop() == 0
    from test_gift_card_end_to_end import run_audit
    audit = run_audit(data_dir)
    assert audit.returncode == 0, audit.stdout
