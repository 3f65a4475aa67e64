"""`cardgate serve --workers 2`: two real processes on one port (SO_REUSEPORT) and one
LMDB store. Which worker a connection reached is read from the workers' own /metrics."""
import concurrent.futures
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import grpc
import pytest

from cardgate.gateway.cli.channels import open_channel
from cardgate.gateway.cli.demo import clients_dir, read_demo_pans
from cardgate.gateway.ops import top
from cardgate.gateway.store.audit import audit
from cardgate.v1 import authorization_pb2, authorization_pb2_grpc, common_pb2

from gateway_process import LIMITS_LIFTED, GatewayProcess

pytestmark = pytest.mark.slow

SYS_TGKILL = 234                       # x86_64: a signal to one thread of a process
_METRICS = re.compile(r"Metrics for Prometheus on (.*) \(one per worker")
_PIDS = re.compile(r"2 workers \(pids (\d+), (\d+)\)")
_RESTARTED = re.compile(r"worker (\d) serves again \(pid (\d+), metrics (\S+)\)")


def eur(minor):
    return common_pb2.Money(amount_minor=minor, currency="EUR")


def answered(metrics_address) -> float:
    """Requests this worker has answered (every RPC, every result)."""
    return sum(top.scrape(metrics_address).requests.values())


class Workers:
    """A `serve --workers 2` subprocess, and a client connection to each worker."""

    def __init__(self, data_dir, global_args=()):
        self.process = GatewayProcess(data_dir, "--workers", "2", *LIMITS_LIFTED, global_args=global_args)
        try:
            banner = self.wait_for("Try, in another terminal")
            self.metrics = re.findall(r"http://(\S+)/metrics", _METRICS.search(banner).group(1))
            self.pids = [int(p) for p in _PIDS.search(banner).groups()]
            self.pans = read_demo_pans(data_dir)
        except BaseException:
            self.process.stop()             # no gateway outlives its test
            raise

    def wait_for(self, text, timeout_s=30) -> str:
        """The output so far, once `text` is in it (the rest of the banner, a restart)."""
        deadline = time.monotonic() + timeout_s
        while text not in "".join(self.process.output):
            assert time.monotonic() < deadline, f"no {text!r} in:\n" + "".join(self.process.output)
            time.sleep(0.05)
        return "".join(self.process.output)

    def follow_restarts(self):
        """A restarted worker has a new pid and (port 0) a new metrics address."""
        for index, pid, metrics in _RESTARTED.findall("".join(self.process.output)):
            self.pids[int(index)], self.metrics[int(index)] = int(pid), metrics

    def connection(self):
        """A channel with a TCP connection of its own (no subchannel shared with others)."""
        return open_channel(self.process.address, clients_dir(self.process.data_dir), "demo-terminal",
                            own_connection=True)

    def stub_on_each_worker(self) -> list:
        """[stub reaching worker 0, stub reaching worker 1]: new connections until the
        kernel has given one to each (the worker whose counter moved answered)."""
        found = {}
        for _ in range(60):
            channel = self.connection()
            stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
            before = [answered(m) for m in self.metrics]
            stub.GetBalance(authorization_pb2.GetBalanceRequest(pan=self.pans[0]), timeout=10)
            moved = [i for i, m in enumerate(self.metrics) if answered(m) > before[i]]
            assert len(moved) == 1, moved
            if moved[0] in found:
                channel.close()
            else:
                found[moved[0]] = stub
            if len(found) == 2:
                return [found[0], found[1]]
        raise AssertionError(f"60 connections all reached worker {list(found)}")


def balance(stub, pan) -> int:
    return stub.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan), timeout=10).balance.balance_minor


def test_a_retry_reaching_the_other_worker_gets_the_first_answer(tmp_path):
    log_file = tmp_path / "requests.log"
    workers = Workers(tmp_path / "data", ("--log-level", "INFO", "--log-format", "json",
                                          "--log-file", str(log_file)))
    try:
        first, other = workers.stub_on_each_worker()
        pan = workers.pans[0]
        start = balance(first, pan)
        purchase = authorization_pb2.PurchaseRequest(request_id=str(uuid.uuid4()), pan=pan, amount=eur(125))
        answer = first.Purchase(purchase, timeout=10)
        assert answer.authorization.result_code == common_pb2.RESULT_CODE_APPROVED
        assert other.Purchase(purchase, timeout=10) == answer
        paid = answer.authorization.approved.amount_minor    # 125 less the demo's 2 % discount
        assert paid == 123 and balance(other, pan) == start - paid

        # The same request id sent to both workers at once: one application, one answer.
        requests = [authorization_pb2.PurchaseRequest(request_id=str(uuid.uuid4()), pan=pan, amount=eur(7))
                    for _ in range(40)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            on_first = [pool.submit(first.Purchase, r, timeout=10) for r in requests]
            on_other = [pool.submit(other.Purchase, r, timeout=10) for r in requests]
            pairs = [(a.result(), b.result()) for a, b in zip(on_first, on_other)]
        for a, b in pairs:
            assert a == b
            assert a.authorization.result_code == common_pb2.RESULT_CODE_APPROVED
        assert len({a.authorization.journal_seq for a, _ in pairs}) == 40
        assert balance(first, pan) == balance(other, pan) == start - paid - 40 * 7

        # The id again with other content, on the other worker: refused, nothing changes.
        changed = authorization_pb2.PurchaseRequest(request_id=purchase.request_id, pan=pan, amount=eur(126))
        with pytest.raises(grpc.RpcError) as refused:
            other.Purchase(changed, timeout=10)
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert balance(first, pan) == start - paid - 40 * 7

        # `cardgate top --metrics A,B` adds the workers up.
        both = top.scrape(",".join(workers.metrics))
        assert sum(both.requests.values()) == sum(answered(m) for m in workers.metrics) > 2 * 40
        assert both.gauges["cardgate_store_commit_ok"] == 1
    finally:
        assert workers.process.stop() == 0
    assert "cardgate: stopped" in "".join(workers.process.output)
    for pid in workers.pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
    assert audit(tmp_path / "data")[0] == []

    # Both workers appended to one log file: every line whole, each naming its worker.
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    purchases = [line for line in lines if line.get("rpc") == "Purchase"]
    assert {line["worker"] for line in purchases} == {0, 1}
    for r in requests:
        assert sorted(line["worker"] for line in purchases if line["request_id"] == r.request_id) == [0, 1]


def test_a_worker_killed_under_load_is_started_again_and_nothing_is_lost(tmp_path):
    workers = Workers(tmp_path / "data")
    pan = workers.pans[1]
    stop = threading.Event()
    acked, lock = {}, threading.Lock()       # request id -> (request, answer)

    def load():
        stub = authorization_pb2_grpc.AuthorizationServiceStub(workers.connection())
        while not stop.is_set():
            request = authorization_pb2.PurchaseRequest(request_id=str(uuid.uuid4()), pan=pan, amount=eur(3))
            for _ in range(100):              # the same id until answered
                try:
                    answer = stub.Purchase(request, timeout=10)
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                    stub = authorization_pb2_grpc.AuthorizationServiceStub(workers.connection())
                    time.sleep(0.05)
            else:
                raise AssertionError(f"{request.request_id} never answered")
            with lock:
                acked[request.request_id] = (request, answer)

    try:
        stub = authorization_pb2_grpc.AuthorizationServiceStub(workers.connection())
        loaded = stub.LoadValue(authorization_pb2.LoadValueRequest(
            request_id=str(uuid.uuid4()), pan=pan, amount=eur(50_000)), timeout=10)
        assert loaded.authorization.result_code == common_pb2.RESULT_CODE_APPROVED
        start = balance(stub, pan)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            loads = [pool.submit(load) for _ in range(4)]
            time.sleep(1.0)
            os.kill(workers.pids[1], signal.SIGKILL)
            workers.wait_for("worker 1 serves again")
            workers.follow_restarts()
            time.sleep(1.0)
            stop.set()
            for f in loads:
                f.result()
        stubs = workers.stub_on_each_worker()
        for i, (request, answer) in enumerate(acked.values()):
            assert stubs[i % 2].Purchase(request, timeout=10) == answer
        assert {a.authorization.result_code for _, a in acked.values()} == {common_pb2.RESULT_CODE_APPROVED}
        assert balance(stubs[0], pan) == start - 3 * len(acked)
        assert len(acked) > 20
    finally:
        assert workers.process.stop() == 0
    assert audit(tmp_path / "data")[0] == []


def test_a_port_another_process_holds_is_refused_and_nothing_starts(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "cardgate.gateway.cli.main", "serve", "--workers", "2", "--data-dir",
             str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}", "--metrics-listen", "off"],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done
    assert f"cannot listen on 127.0.0.1:{port}: is another gateway using that port?" in done.stderr
    assert "worker" not in done.stdout + done.stderr
    assert not (tmp_path / "data").exists()             # refused before anything was made


def test_workers_without_tls_only_on_loopback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cardgate.gateway.cli.main", "serve", "--workers", "2", "--insecure",
         "--data-dir", str(tmp_path / "data"), "--listen", "0.0.0.0:0", "--metrics-listen", "off"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "refusing to serve without TLS on 0.0.0.0:0" in done.stderr, done
    assert not (tmp_path / "data").exists()


def test_a_sigterm_the_kernel_hands_to_another_thread_still_stops_the_gateway(tmp_path):
    """Found with `serve --workers`: a worker that had served requests did not stop on
    SIGTERM when the kernel delivered it to one of gRPC's threads while the main thread
    waited without a timeout (Python runs handlers only in the main thread)."""
    gateway = GatewayProcess(tmp_path / "data")
    try:
        with gateway.channel() as channel:           # requests start gRPC's own threads
            stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
            for pan in read_demo_pans(tmp_path / "data"):
                stub.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan), timeout=10)
        pid = gateway.proc.pid
        others = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.syscall(SYS_TGKILL, pid, others[-1], signal.SIGTERM) == 0
        assert gateway.proc.wait(timeout=15) == 0
    finally:
        if gateway.proc.poll() is None:
            gateway.kill()
