"""A terminal's story over a real gRPC channel on loopback, against a real LMDB."""
import subprocess
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import \
    ProtoReflectionDescriptorDatabase

from cardgate.v1 import common_pb2

from conftest import LiveGateway
from helpers import (balance, create_range, funded_card, issue, load, make_pan, new_id, purchase,
                     refund, reverse)

APPROVED = common_pb2.RESULT_CODE_APPROVED


def run_audit(data_dir):
    return subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", "audit", "--data-dir",
                           str(data_dir)], capture_output=True, text=True, timeout=60)


def test_gift_card_load_pay_retry_refund_reverse_and_decline(tmp_path):
    gw = LiveGateway(tmp_path / "data")
    try:
        pan = make_pan(1)
        create_range(gw)
        issued = issue(gw, [pan])
        assert issued.cards[0].masked_pan == "627700******" + pan[-4:]

        activated = load(gw, pan, 100_00)
        assert activated.result_code == APPROVED
        assert activated.balance.available_minor == 100_00

        pay_id = new_id()
        paid = purchase(gw, pan, 30_00, request_id=pay_id)
        assert paid.result_code == APPROVED
        assert paid.balance.balance_minor == 70_00
        assert len(paid.approval_code) == 6 and paid.approval_code.isdigit()

        retried = purchase(gw, pan, 30_00, request_id=pay_id)
        assert retried == paid                      # the original answer, byte for byte
        assert balance(gw, pan).balance_minor == 70_00

        refund_id = new_id()
        refunded = refund(gw, pan, 10_00, original_request_id=pay_id, request_id=refund_id)
        assert refunded.result_code == APPROVED and refunded.balance.balance_minor == 80_00

        reversed_ = reverse(gw, refund_id)
        assert reversed_.result_code == APPROVED
        assert reversed_.approved.amount_minor == 10_00
        assert reversed_.balance.balance_minor == 70_00

        declined = purchase(gw, pan, 80_00)
        assert declined.result_code == common_pb2.RESULT_CODE_DECLINED_INSUFFICIENT_FUNDS
        assert declined.approval_code == ""
        assert declined.balance.balance_minor == 70_00
        assert pan not in str(declined)
    finally:
        gw.close()
    audit = run_audit(tmp_path / "data")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "audit passed" in audit.stdout


def test_health_and_reflection_are_served(live_gateway):
    health = health_pb2_grpc.HealthStub(live_gateway.channel)
    for service in ("", "cardgate.v1.AuthorizationService", "cardgate.v1.IssuingService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == \
            health_pb2.HealthCheckResponse.SERVING
    services = set(ProtoReflectionDescriptorDatabase(live_gateway.channel).get_services())
    assert {"cardgate.v1.AuthorizationService", "cardgate.v1.IssuingService",
            "grpc.health.v1.Health"} <= services
    # A generic tool can resolve a method's request type from the server alone.
    db = ProtoReflectionDescriptorDatabase(live_gateway.channel)
    assert db.FindFileContainingSymbol("cardgate.v1.PurchaseRequest").name == \
        "cardgate/v1/authorization.proto"


def test_reversal_of_a_purchase_never_answered_then_late_arrival_is_declined(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 2)
    lost_id = new_id()            # the terminal sent this purchase, then timed out
    assert reverse(gw, lost_id).result_code == APPROVED
    late = purchase(gw, pan, 20_00, request_id=lost_id)
    assert late.result_code == common_pb2.RESULT_CODE_DECLINED_ALREADY_REVERSED
    assert balance(gw, pan).balance_minor == 50_00


def test_reversal_of_a_purchase_gives_the_money_back_once(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 3)
    pay_id = new_id()
    purchase(gw, pan, 20_00, request_id=pay_id)
    assert reverse(gw, pay_id).balance.balance_minor == 50_00
    again = reverse(gw, pay_id)
    assert again.result_code == common_pb2.RESULT_CODE_DECLINED_ALREADY_REVERSED
    assert balance(gw, pan).balance_minor == 50_00
    late_refund = refund(gw, pan, 5_00, original_request_id=pay_id)
    assert late_refund.result_code == common_pb2.RESULT_CODE_DECLINED_ALREADY_REVERSED


def test_same_request_id_with_other_content_is_rejected_and_changes_nothing(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 4)
    pay_id = new_id()
    purchase(gw, pan, 20_00, request_id=pay_id)
    try:
        purchase(gw, pan, 25_00, request_id=pay_id)
        raise AssertionError("a reused request id was accepted")
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.ALREADY_EXISTS
        assert pay_id in exc.details()
    assert balance(gw, pan).balance_minor == 30_00


def test_issuing_retry_is_idempotent_and_other_content_is_refused_whole(live_gateway):
    from cardgate.v1 import issuing_pb2
    gw = live_gateway
    create_range(gw)
    rid = new_id()
    cards = [issuing_pb2.GiftCardToIssue(pan=make_pan(10 + i), expiry_yyyymm=209912) for i in range(3)]
    first = gw.issuing.IssueGiftCards(issuing_pb2.IssueGiftCardsRequest(
        request_id=rid, range_id=1, cards=cards))
    again = gw.issuing.IssueGiftCards(issuing_pb2.IssueGiftCardsRequest(
        request_id=rid, range_id=1, cards=cards))
    assert first == again
    assert len({c.card_id for c in first.cards}) == 3
    more = cards + [issuing_pb2.GiftCardToIssue(pan=make_pan(20), expiry_yyyymm=209912)]
    try:
        gw.issuing.IssueGiftCards(issuing_pb2.IssueGiftCardsRequest(
            request_id=rid, range_id=1, cards=more))
        raise AssertionError("a reused request id was accepted")
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.ALREADY_EXISTS
    # The extra card was not issued: loading it finds no card.
    assert load(gw, make_pan(20), 1_00).result_code == common_pb2.RESULT_CODE_DECLINED_UNKNOWN_CARD


def test_a_full_store_answers_resource_exhausted_and_keeps_what_was_acknowledged(tmp_path):
    gw = LiveGateway(tmp_path / "data", map_size_bytes=256 << 10)
    try:
        pan = funded_card(gw, 5, 1_000_00)
        acknowledged = 0
        while True:
            try:
                purchase(gw, pan, 1)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "full" in exc.details() and "retry with the same request_id" in exc.details()
                break
            acknowledged += 1
            assert acknowledged < 100_000, "the store never filled up"
        assert balance(gw, pan).balance_minor == 1_000_00 - acknowledged
    finally:
        gw.close()
    audit = run_audit(tmp_path / "data")
    assert audit.returncode == 0, audit.stdout
