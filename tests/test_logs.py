"""Structured logs: a gateway started with JSON logs to a file writes one line per
request answered, with its request id, terminal, operation, result, latency and masked
card number, and never a full card number, track or PIN."""
import json
import time

from cardgate.gateway.cli.demo import DEMO_MERCHANT_ID, DEMO_OUTLET_ID, read_demo_pans
from cardgate.v1 import authorization_pb2, authorization_pb2_grpc, common_pb2

from gateway_process import GatewayProcess
from helpers import eur, new_id


def test_json_request_lines_in_a_file(tmp_path, monkeypatch):
    log_file = tmp_path / "cardgate.log"
    monkeypatch.setenv("CARDGATE_LOG_FORMAT", "json")
    monkeypatch.setenv("CARDGATE_LOG_FILE", str(log_file))
    monkeypatch.setenv("CARDGATE_LOG_LEVEL", "INFO")
    data_dir = tmp_path / "data"
    gateway = GatewayProcess(data_dir)
    try:
        pan = read_demo_pans(data_dir)[0]
        with gateway.channel() as channel:
            stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
            paid_id, refused_id = new_id(), new_id()
            paid = stub.Purchase(authorization_pb2.PurchaseRequest(
                request_id=paid_id, pan=pan, amount=eur(1_00), pin=""), timeout=10).authorization
            assert paid.result_code == common_pb2.RESULT_CODE_APPROVED
            too_much = stub.Purchase(authorization_pb2.PurchaseRequest(
                request_id=refused_id, pan=pan, amount=eur(10**9)), timeout=10).authorization
            assert too_much.result_code != common_pb2.RESULT_CODE_APPROVED
    finally:
        assert gateway.stop() == 0
    deadline = time.monotonic() + 5
    while paid_id not in log_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    text = log_file.read_text()
    lines = [json.loads(line) for line in text.splitlines()]           # every line is JSON
    by_id = {line.get("request_id"): line for line in lines if line["logger"] == "cardgate.requests"}
    first = by_id[paid_id]
    assert {k: first[k] for k in ("rpc", "operation", "result", "terminal", "caller", "level")} == {
        "rpc": "Purchase", "operation": "Purchase", "result": "RESULT_CODE_APPROVED",
        "terminal": f"{DEMO_MERCHANT_ID}/{DEMO_OUTLET_ID}", "caller": "demo-terminal", "level": "INFO"}
    assert first["card"] == pan[:6] + "******" + pan[-4:] and first["latency_ms"] > 0
    assert by_id[refused_id]["result"].startswith("RESULT_CODE_DECLINED")
    assert pan not in text and "time" in first


def test_a_request_id_cannot_forge_a_log_line(tmp_path):
    import logging

    from cardgate.gateway.ops import logs

    class Request:
        request_id = "x\n2026-01-01 00:00:00,000 INFO cardgate.requests: forged"
        pan = "6277001234567890"

    log_file = tmp_path / "text.log"
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    try:
        logs.configure("INFO", "text", str(log_file))
        logs.log_request(None, "Purchase", Request, "RESULT_CODE_APPROVED", time.perf_counter())
        logging.getLogger().handlers[0].flush()
    finally:
        logging.getLogger().handlers[:], level = saved
        logging.getLogger().setLevel(level)
        logs._lines.handler = None
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1 and "\\n2026" in lines[0] and "627700******7890" in lines[0]
    assert "6277001234567890" not in lines[0]
