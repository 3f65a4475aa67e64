"""No answer leaves the gateway before the fsync of the commit that holds it, seen from
the kernel: the real `cardgate serve` runs under strace, and for each purchase the trace
must show the request arriving on the client's socket, then an fdatasync of the LMDB data
file completing, then the answer (which names the card) leaving on that socket.

SIGKILL tests cannot show this (the page cache survives a killed process), so the same
check is run against a gateway whose store is opened without sync, and must catch it.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import grpc
import pytest

from cardgate.gateway.cli.demo import read_demo_pans
from cardgate.gateway.security.pan import mask
from cardgate.v1 import authorization_pb2, authorization_pb2_grpc, common_pb2

from gateway_process import children_of

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed "
                                 "(./run installs it)")]

_LISTENING = re.compile(r"cardgate listening on (\S+),")
_LINE = re.compile(r"(\d+)\s+(\d+\.\d+) (.*)")     # strace pads the pid to five columns
_SYSCALLS = "openat,accept4,recvmsg,sendmsg,fdatasync,fsync"
# The gateway as `cardgate serve` runs it; with `unsynced`, its store opened without sync.
_LAUNCH = """
import sys
from cardgate.gateway.store import store as store_module
if sys.argv[1] == "unsynced":
    opened = store_module.Store.__init__
    def without_sync(self, *args, **kwargs):
        kwargs["sync"] = False
        opened(self, *args, **kwargs)
    store_module.Store.__init__ = without_sync
from cardgate.gateway.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def _serve_traced(data_dir, trace_path, mode):
    proc = subprocess.Popen(
        ["strace", "-f", "-ttt", "-s", "4096", "-e", f"trace={_SYSCALLS}", "-e", "signal=none",
         "-o", str(trace_path), sys.executable, "-c", _LAUNCH, mode, "serve", "--insecure",
         "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line)
        found = _LISTENING.search(line)
        if found:
            return proc, found.group(1)
    proc.kill()
    raise RuntimeError("the traced gateway did not start:\n" + "".join(output))


def _stop(proc):
    for pid in children_of(proc.pid):               # the gateway, strace's child
        os.kill(pid, signal.SIGTERM)
    proc.communicate(timeout=60)


def _purchases(address, pan, count):
    request_ids = []
    with grpc.insecure_channel(address) as channel:
        stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
        for _ in range(count):
            request_ids.append(str(uuid.uuid4()))
            answer = stub.Purchase(authorization_pb2.PurchaseRequest(
                request_id=request_ids[-1], pan=pan,
                amount=common_pb2.Money(amount_minor=1_00, currency="EUR")), timeout=30)
            assert answer.authorization.result_code == common_pb2.RESULT_CODE_APPROVED
    return request_ids


def answers_before_their_sync(trace_text, request_ids, masked_pan):
    """The request ids whose answer left before an fdatasync (or fsync) of the LMDB data
    file had completed since the request arrived."""
    data_fds, sockets, pending, syncs = set(), set(), {}, []
    arrived, answered = {}, {}
    for line in trace_text.splitlines():
        parsed = _LINE.match(line)
        if not parsed:
            continue
        pid, at, call = parsed.group(1), float(parsed.group(2)), parsed.group(3)
        opened = re.match(r'openat\(.*"[^"]*/ledger/data\.mdb".*\) = (\d+)$', call)
        if opened:
            data_fds.add(int(opened.group(1)))
        accepted = re.match(r"accept4\(.*\) = (\d+)$", call)
        if accepted:
            sockets.add(int(accepted.group(1)))
        started = re.match(r"(fdatasync|fsync)\((\d+)(\)|\s*<unfinished)", call)
        if started:
            if started.group(3) == ")" and call.endswith("= 0"):
                syncs.append((at, int(started.group(2))))
            else:
                pending[pid] = int(started.group(2))
        if re.match(r"<\.\.\. (fdatasync|fsync) resumed>.*= 0$", call) and pid in pending:
            syncs.append((at, pending.pop(pid)))
        for request_id in request_ids:
            if request_id in call and "recvmsg" in call:
                arrived.setdefault(request_id, at)
        sent = re.match(r"sendmsg\((\d+),", call)
        if sent and int(sent.group(1)) in sockets and masked_pan in call:
            waiting = [r for r in request_ids if r in arrived and r not in answered]
            if waiting:
                answered[waiting[0]] = at
    assert set(arrived) == set(answered) == set(request_ids), \
        f"the trace does not show every request and its answer: {arrived}, {answered}"
    return [r for r in request_ids
            if not any(arrived[r] < at < answered[r] and fd in data_fds for at, fd in syncs)]


@pytest.mark.parametrize("mode", ["synced", "unsynced"])
def test_no_answer_leaves_before_its_commit_is_synced(tmp_path, mode):
    trace_path = tmp_path / "trace.txt"
    proc, address = _serve_traced(tmp_path / "data", trace_path, mode)
    try:
        pan = read_demo_pans(tmp_path / "data")[0]
        request_ids = _purchases(address, pan, 3)
    finally:
        _stop(proc)
    early = answers_before_their_sync(trace_path.read_text(errors="replace"), request_ids, mask(pan))
    if mode == "synced":
        assert early == [], f"answered before the fsync of their commit: {early}"
    else:                                           # the check catches a gateway that skips it
        assert early == request_ids
