"""Structured logs: a gateway started with JSON logs to a file writes one line per
request answered, with its request id, terminal, operation, result, latency and masked
card number, and never a full card number, track or PIN."""
import json
import time

import grpc
import pytest

from cardgate.gateway.cli.demo import DEMO_MERCHANT_ID, DEMO_OUTLET_ID, read_demo_pans
from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2, forecourt_pb2,
                         forecourt_pb2_grpc)

from gateway_process import GatewayProcess
from helpers import eur, make_pan, new_id


def json_logging_gateway(tmp_path, monkeypatch, level="INFO"):
    """(gateway process logging JSON lines to a file, that file, its data directory)."""
    log_file = tmp_path / "cardgate.log"
    monkeypatch.setenv("CARDGATE_LOG_FORMAT", "json")
    monkeypatch.setenv("CARDGATE_LOG_FILE", str(log_file))
    monkeypatch.setenv("CARDGATE_LOG_LEVEL", level)
    return GatewayProcess(tmp_path / "data"), log_file, tmp_path / "data"


def test_json_request_lines_in_a_file(tmp_path, monkeypatch):
    gateway, log_file, data_dir = json_logging_gateway(tmp_path, monkeypatch)
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
    assert len(lines) == 1 and "(not a UUID, 56 characters)" in lines[0] and "forged" not in lines[0]
    assert "627700******7890" in lines[0]
    assert "6277001234567890" not in lines[0]


def test_a_card_number_sent_as_a_request_id_is_never_echoed(tmp_path, monkeypatch):
    """A PAN where a request id belongs (alone, or inside other text; unary, or an
    operation of a forecourt batch) is neither in the error nor in any log line."""
    gateway, log_file, data_dir = json_logging_gateway(tmp_path, monkeypatch, "DEBUG")
    pan = read_demo_pans(data_dir)[0]
    other_pan = make_pan(424242, prefix="411111", length=19)
    texts = [pan, f"id-{pan}", f"{other_pan}x", f"{pan}{pan}"]
    details = []
    try:
        with gateway.channel() as channel:
            stub = authorization_pb2_grpc.AuthorizationServiceStub(channel)
            forecourt = forecourt_pb2_grpc.ForecourtServiceStub(channel)
            for text in texts:
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Purchase(authorization_pb2.PurchaseRequest(
                        request_id=text, pan=pan, amount=eur(1_00)), timeout=10)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                details.append(caught.value.details())
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Reverse(authorization_pb2.ReverseRequest(
                        request_id=new_id(), original_request_id=text), timeout=10)
                details.append(caught.value.details())
                batch = forecourt.AuthorizeBatch(forecourt_pb2.AuthorizeBatchRequest(operations=[
                    forecourt_pb2.ForecourtOperation(purchase=authorization_pb2.PurchaseRequest(
                        request_id=text, pan=pan, amount=eur(1_00)))]), timeout=10)
                details.append(batch.results[0].error.message)
                assert batch.results[0].request_id == text     # the client's own field, as sent
    finally:
        assert gateway.stop() == 0
    assert all("request_id" in d for d in details), details
    logged = log_file.read_text()
    for text in details + [logged]:
        assert pan not in text and other_pan not in text, text
    assert "(not a UUID" in logged


def test_card_numbers_are_masked_in_any_text():
    from cardgate.gateway.security.pan import mask_pans_in

    pan = make_pan(7)
    assert mask_pans_in(f"a {pan} b") == f"a {pan[:6]}******{pan[-4:]} b"
    not_a_pan = f"x{pan[:-1]}{(int(pan[-1]) + 1) % 10}y"                 # fails the Luhn check
    assert mask_pans_in(not_a_pan) == not_a_pan
    assert pan not in mask_pans_in(pan * 2)                              # a longer run: masked
    assert mask_pans_in("card 123456789012") == "card 123456789012"       # 12 digits: no PAN
