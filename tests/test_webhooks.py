"""Events to other systems, told with real processes: a gateway, the `cardgate webhooks`
relay, and real HTTPS receivers in this process. Every committed journal entry reaches
the receiver, signed, exactly once after dedup by event id, across a SIGKILL of the
relay mid-stream; an endpoint that keeps failing gets its events in the dead-letter file
after the retries, and the relay goes on. (A bad configuration: tests/test_cli.py.)"""
import datetime
import http.server
import json
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cardgate.gateway.cli.demo import read_demo_pans
from cardgate.gateway.office.webhooks import verify
from cardgate.gateway.store.store import Store
from cardgate.v1 import authorization_pb2, authorization_pb2_grpc, common_pb2

from gateway_process import GatewayProcess
from helpers import journal_entries

SECRET = b"a-shared-secret-of-the-erp-0123456789"


def self_signed(tmp_path):
    """(certificate file, key file) for localhost, its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "receiver.crt", tmp_path / "receiver.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class Receiver:
    """An HTTPS endpoint that keeps what it is sent; `failing`: answer 503 to everything;
    every third first delivery of an event is answered 500 (the relay must retry it)."""

    def __init__(self, cert_file, key_file, failing=False):
        self.received, self.bad_signatures, self.refused = [], 0, set()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event_id = self.headers["X-Cardgate-Event-Id"]
                if not verify(SECRET, self.headers["X-Cardgate-Signature"], body):
                    receiver.bad_signatures += 1
                seq = int(event_id.split("-")[1])
                if failing or (seq % 3 == 0 and event_id not in receiver.refused):
                    receiver.refused.add(event_id)
                    self.send_response(503 if failing else 500)
                    self.end_headers()
                    return
                receiver.received.append((event_id, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def relay(tmp_path, gateway, config):
    path = tmp_path / "webhooks.json"
    path.write_text(json.dumps(config))
    return subprocess.Popen(
        [sys.executable, "-m", "cardgate.gateway.cli.main", "webhooks", "--config", str(path),
         "--target", gateway.address, "--data-dir", str(gateway.data_dir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def traffic(gateway, count):
    stub = authorization_pb2_grpc.AuthorizationServiceStub(gateway.channel())
    pans = read_demo_pans(gateway.data_dir)
    for i in range(count):
        answer = stub.LoadValue(authorization_pb2.LoadValueRequest(
            request_id=str(uuid.uuid4()), pan=pans[i % 3],
            amount=common_pb2.Money(amount_minor=100 + i, currency="EUR")), timeout=10)
        assert answer.authorization.result_code == common_pb2.RESULT_CODE_APPROVED


def wait_for(condition, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_every_event_reaches_the_receiver_once_after_dedup_across_a_relay_kill(tmp_path):
    cert_file, key_file = self_signed(tmp_path)
    (tmp_path / "erp.secret").write_bytes(SECRET)
    receiver = Receiver(cert_file, key_file)
    down = Receiver(cert_file, key_file, failing=True)
    gateway = GatewayProcess(tmp_path / "data", "--card-per-minute", "1000000")
    config = {"state_dir": "state", "attempts": 3, "backoff_s": 0.05, "backoff_max_s": 0.2,
              "endpoints": [{"name": "erp", "url": receiver.url, "secret_file": "erp.secret",
                             "ca_file": str(cert_file)},
                            {"name": "down", "url": down.url, "secret_file": "erp.secret",
                             "ca_file": str(cert_file)}]}
    relays = []
    try:
        traffic(gateway, 150)
        first = relay(tmp_path, gateway, config)
        relays.append(first)
        assert wait_for(lambda: len(receiver.received) >= 40)
        first.send_signal(signal.SIGKILL)                     # mid-stream
        first.wait(10)
        traffic(gateway, 50)                                  # while no relay runs
        second = relay(tmp_path, gateway, config)
        relays.append(second)
        store = Store(gateway.data_dir, readonly=True)
        expected = {f"journal-{seq}" for seq in range(1, len(journal_entries(store)) + 1)}
        store.close()
        assert wait_for(lambda: {e for e, _ in receiver.received} >= expected, 120), \
            f"{len(expected - {e for e, _ in receiver.received})} events never arrived"
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
        ids = [e for e, _ in receiver.received]
        assert set(ids) == expected                            # all, and nothing else
        assert len(ids) - len(set(ids)) <= 1     # redelivered: at most the one in flight at the kill
        assert receiver.bad_signatures == 0
        one = dict(receiver.received)[f"journal-{max(int(i.split('-')[1]) for i in ids)}"]
        assert one["version"] == 1 and one["operation"] == "LOAD" and one["currency"] == "EUR"
        assert one["credit"]["owner_kind"] == "card" and "******" in one["credit"]["owner"]
        # the failing endpoint: every event dead-lettered after 3 attempts, none lost
        letters = tmp_path / "state" / "down.dead-letter.jsonl"
        assert wait_for(lambda: letters.exists() and len(letters.read_text().splitlines()) > 10)
        line = json.loads(letters.read_text().splitlines()[0])
        assert line["error"] == "HTTP 503" and line["event"]["event_id"].startswith("journal-")
        cursor = int((tmp_path / "state" / "erp.cursor").read_text())
        assert cursor == len(expected)
    finally:
        for process in relays:              # (a failed check leaves none running)
            if process.poll() is None:
                process.kill()
                process.wait(10)
        gateway.stop()
        receiver.close()
        down.close()
