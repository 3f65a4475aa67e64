"""Hot backup and restore: `cardgate backup` copies a serving gateway's data directory
under load; `cardgate restore` makes a new one from it that passes the audit and holds
every request acknowledged before the backup began; a gateway serves on it."""
import json
import subprocess
import sys
import threading
import time
import uuid

import pytest

from cardgate.gateway.cli.demo import read_demo_pans
from cardgate.gateway.security import kek
from cardgate.gateway.store.store import Store
from cardgate.v1 import authorization_pb2, authorization_pb2_grpc, common_pb2

from gateway_process import GatewayProcess
from helpers import eur


def cardgate(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, env=env)


@pytest.mark.slow
def test_a_backup_under_load_restores_with_every_acknowledged_request(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    # Three threads on one terminal certificate: lift the rate limits that would refuse them.
    gateway = GatewayProcess(data_dir, "--card-per-minute", "1000000", "--terminal-rate-per-s", "1000000")
    acknowledged, lock, stop = [], threading.Lock(), threading.Event()
    try:
        pans = read_demo_pans(data_dir)[:3]

        def load_forever(pan):
            with gateway.channel() as channel:
                stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
                while not stop.is_set():
                    rid = str(uuid.uuid4())
                    reply = stub.LoadValue(authorization_pb2.LoadValueRequest(
                        request_id=rid, pan=pan, amount=eur(1)), timeout=30).authorization
                    if reply.result_code == common_pb2.RESULT_CODE_APPROVED:
                        with lock:
                            acknowledged.append((rid, pan, reply.approval_code))

        threads = [threading.Thread(target=load_forever, args=(pan,)) for pan in pans]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 200:
            assert time.monotonic() < deadline and any(t.is_alive() for t in threads), \
                f"the load did not get going ({len(acknowledged)} acknowledged)"
            stop.wait(0.05)
        with lock:
            before = list(acknowledged)                    # acknowledged before the backup began
        made = cardgate("backup", str(tmp_path / "backup"), "--data-dir", str(data_dir))
        assert made.returncode == 0, made.stderr
        assert "it holds the data keys" in made.stdout
        stop.wait(0.5)                                     # the load goes on after it
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert gateway.stop() == 0
    assert len(acknowledged) > len(before)
    manifest = json.loads((tmp_path / "backup" / "BACKUP.json").read_text())
    assert manifest["store_bytes"] <= manifest["source_bytes"] and manifest["last_journal_seq"] >= len(before)

    refused = cardgate("restore", str(tmp_path / "backup"), "--data-dir", str(data_dir))
    assert refused.returncode == 2 and "not empty" in refused.stderr
    # The backup holds its keys wrapped: restoring it needs the KEK of the data directory.
    without = cardgate("restore", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "no-kek"))
    assert without.returncode != 0 and "KEK" in without.stderr
    monkeypatch.setenv(kek.ENV_FILE, str(kek.default_file(data_dir)))
    restored = cardgate("restore", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "restored"))
    assert restored.returncode == 0 and "audit passed" in restored.stdout, restored.stdout + restored.stderr

    store = Store(tmp_path / "restored", readonly=True)
    try:
        with store.env.begin() as txn:
            missing = [rid for rid, _, _ in before if txn.get(uuid.UUID(rid).bytes, db=store.db_requests) is None]
            journal = txn.stat(store.db_journal)["entries"]
    finally:
        store.close()
    assert missing == []                                   # every acknowledged request is there
    assert journal >= len(before)

    # A gateway serves on the restored directory: same certificates, card numbers readable.
    served = GatewayProcess(tmp_path / "restored")
    try:
        with served.channel() as channel:
            stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
            balance = stub.GetBalance(authorization_pb2.GetBalanceRequest(pan=pans[0]), timeout=10)
            assert balance.balance.balance_minor > 0
            rid, pan, approval = before[-1]                # retried: the original answer, once
            again = stub.LoadValue(authorization_pb2.LoadValueRequest(
                request_id=rid, pan=pan, amount=eur(1)), timeout=10).authorization
            assert (again.result_code, again.approval_code) == (common_pb2.RESULT_CODE_APPROVED, approval)
    finally:
        assert served.stop() == 0
