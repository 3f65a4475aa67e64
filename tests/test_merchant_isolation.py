"""Between merchants, over real mutual TLS with certificates of the gateway's own CA, as
an attacker holding a real terminal certificate of another merchant would try: nothing
that refers to an earlier request (reversal, refund, void, completion, a retry's stored
answer) crosses from one merchant to another, and a refusal tells nothing of the
original. An open stream honours a revocation on its next message."""
import subprocess
import sys
import time
import uuid

import grpc
import pytest

from cardgate.fastcore.records import Op
from cardgate.gateway.cli.channels import open_channel
from cardgate.gateway.security.pki import load_certificate
from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2, forecourt_pb2,
                         forecourt_pb2_grpc, issuing_pb2)

from helpers import (balance, beyond_request_records, eur, funded_card, journal_entries, new_id,
                     snapshot)

APPROVED = common_pb2.RESULT_CODE_APPROVED
NOT_OWN = common_pb2.RESULT_CODE_DECLINED_NOT_OWN_REQUEST


@pytest.fixture
def two_merchants(live_gateway):
    """The live gateway (its terminal-1 is merchant m1's) and a terminal of merchant m2."""
    gw = live_gateway
    gw.gateway.pki.issue("terminal", "intruder", gw.certs, merchant_id="m2", outlet_id="o9")
    other = authorization_pb2_grpc.AuthorizationServiceStub(gw.open("intruder"))
    return gw, other


def assert_tells_nothing(authorization, pan):
    assert authorization.result_code == NOT_OWN, authorization
    assert authorization.masked_pan == "" and not authorization.HasField("balance") or \
        authorization.balance.balance_minor == 0
    assert authorization.approved.amount_minor == 0 and authorization.approval_code == ""
    assert pan[-4:] not in str(authorization)


def test_another_merchants_terminal_cannot_act_on_a_purchase_or_hold(two_merchants):
    gw, other = two_merchants
    pan = funded_card(gw, 1, 100_00)
    sale = gw.auth.Purchase(authorization_pb2.PurchaseRequest(
        request_id=new_id(), pan=pan, amount=eur(30_00))).authorization
    sale_id = new_id()
    assert gw.auth.Purchase(authorization_pb2.PurchaseRequest(
        request_id=sale_id, pan=pan, amount=eur(10_00))).authorization.result_code == APPROVED
    hold_id = new_id()
    assert gw.auth.PreAuthorize(authorization_pb2.PreAuthorizeRequest(
        request_id=hold_id, pan=pan, amount=eur(20_00))).authorization.result_code == APPROVED
    assert sale.result_code == APPROVED
    before = snapshot(gw.gateway.store)
    attempts = [
        other.Reverse(authorization_pb2.ReverseRequest(request_id=new_id(),
                                                       original_request_id=sale_id)),
        other.Refund(authorization_pb2.RefundRequest(request_id=new_id(), pan=pan,
                                                     amount=eur(5_00),
                                                     original_request_id=sale_id)),
        other.VoidPreAuthorization(authorization_pb2.VoidPreAuthorizationRequest(
            request_id=new_id(), hold_id=hold_id)),
        other.CompletePreAuthorization(authorization_pb2.CompletePreAuthorizationRequest(
            request_id=new_id(), hold_id=hold_id, pan=pan, amount=eur(5_00))),
        other.Reverse(authorization_pb2.ReverseRequest(request_id=new_id(),
                                                       original_request_id=hold_id)),
    ]
    for attempt in attempts:
        assert_tells_nothing(attempt.authorization, pan)
    after = snapshot(gw.gateway.store)
    assert beyond_request_records(after) == \
        beyond_request_records(before)
    assert balance(gw, pan).balance_minor == 60_00
    # The merchant's own terminal still can; so can an operator (recorded as the actor).
    assert gw.auth.Reverse(authorization_pb2.ReverseRequest(
        request_id=new_id(), original_request_id=sale_id)).authorization.result_code == APPROVED
    operator = authorization_pb2_grpc.AuthorizationServiceStub(gw.open("operator-1"))
    voided_id = new_id()
    voided = operator.Reverse(authorization_pb2.ReverseRequest(
        request_id=voided_id, original_request_id=hold_id)).authorization
    assert voided.result_code == APPROVED
    operator_code = load_certificate(gw.certs / "operator-1.crt").serial_number & 0xFFFF_FFFF
    reversals = [line for line in gw.gateway.store.read_admin_log() if line.op == Op.REVERSAL]
    assert [(line.actor, line.result) for line in reversals] == [(operator_code, APPROVED)]
    assert all(entry.actor == operator_code for entry in journal_entries(gw.gateway.store)
               if entry.request_id == uuid.UUID(voided_id).bytes)


def test_a_retry_by_another_merchant_gets_already_exists_and_no_content(two_merchants):
    gw, other = two_merchants
    pan = funded_card(gw, 1, 100_00)
    sale_id, load_id, refund_id, hold_id, void_id, reverse_id = (new_id() for _ in range(6))
    own = {
        "load": authorization_pb2.LoadValueRequest(request_id=load_id, pan=pan, amount=eur(1_00)),
        "sale": authorization_pb2.PurchaseRequest(request_id=sale_id, pan=pan, amount=eur(9_00)),
        "refund": authorization_pb2.RefundRequest(request_id=refund_id, pan=pan, amount=eur(1_00),
                                                  original_request_id=sale_id),
        "hold": authorization_pb2.PreAuthorizeRequest(request_id=hold_id, pan=pan,
                                                      amount=eur(5_00)),
        "void": authorization_pb2.VoidPreAuthorizationRequest(request_id=void_id,
                                                              hold_id=hold_id),
        "reverse": authorization_pb2.ReverseRequest(request_id=reverse_id,
                                                    original_request_id=refund_id),
    }
    calls = {"load": "LoadValue", "sale": "Purchase", "refund": "Refund",
             "hold": "PreAuthorize", "void": "VoidPreAuthorization", "reverse": "Reverse"}
    for name in ("load", "sale", "refund", "hold", "void", "reverse"):
        answer = getattr(gw.auth, calls[name])(own[name]).authorization
        assert answer.result_code == APPROVED, (name, answer)
    before = snapshot(gw.gateway.store)
    for name in ("load", "refund", "void", "reverse"):
        with pytest.raises(grpc.RpcError) as caught:
            getattr(other, calls[name])(own[name])
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS, name
        assert pan[-4:] not in caught.value.details() and pan[:6] not in caught.value.details()
    assert snapshot(gw.gateway.store) == before
    # The merchant's own retry still gets its stored answer.
    assert gw.auth.LoadValue(own["load"]).authorization.result_code == APPROVED


def test_reversing_an_operators_adjustment_is_refused_with_nothing_in_it(two_merchants):
    gw, other = two_merchants
    pan = funded_card(gw, 1, 10_00)
    adjustment = new_id()
    gw.issuing.AdjustBalance(issuing_pb2.AdjustBalanceRequest(
        request_id=adjustment, pan=pan, amount=eur(5_00),
        direction=issuing_pb2.ADJUSTMENT_DIRECTION_CREDIT,
        reason=common_pb2.ADJUSTMENT_REASON_GOODWILL))
    answer = other.Reverse(authorization_pb2.ReverseRequest(
        request_id=new_id(), original_request_id=adjustment)).authorization
    assert_tells_nothing(answer, pan)
    answer = gw.auth.Reverse(authorization_pb2.ReverseRequest(
        request_id=new_id(), original_request_id=adjustment)).authorization
    assert_tells_nothing(answer, pan)          # a terminal of any merchant


def test_a_revocation_reaches_an_open_stream_on_its_next_message(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 1, 100_00)
    gw.gateway.pki.issue("terminal", "pump-controller", gw.certs, merchant_id="m1",
                         outlet_id="o1")
    channel = open_channel(gw.gateway.address, gw.certs, "pump-controller")
    gw.channels.append(channel)
    stub = forecourt_pb2_grpc.ForecourtServiceStub(channel)
    outbox = []

    def messages():
        while True:
            while not outbox:
                time.sleep(0.01)
            item = outbox.pop(0)
            if item is None:
                return
            yield item

    def sale():
        return forecourt_pb2.AuthorizeStreamRequest(operations=[forecourt_pb2.ForecourtOperation(
            purchase=authorization_pb2.PurchaseRequest(request_id=new_id(), pan=pan,
                                                       amount=eur(1_00)))])

    answers = stub.AuthorizeStream(messages(), timeout=60)
    outbox.append(sale())
    first = next(answers).results[0]
    assert first.authorization.result_code == APPROVED
    revoke = subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", "pki", "revoke",
                             "--data-dir", str(gw.data_dir), "--cert",
                             str(gw.certs / "pump-controller.crt")], capture_output=True,
                            text=True, timeout=60)
    assert revoke.returncode == 0, revoke.stderr
    outbox.append(sale())
    second = next(answers).results[0]
    assert second.WhichOneof("outcome") == "error", second
    assert second.error.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "revoked" in second.error.message
    outbox.append(None)
    list(answers)
    assert balance(gw, pan).balance_minor == 99_00
