"""A forecourt controller sends its pumps' operations in batches: each operation has its
own request id and answer, all are committed together, a bad one does not stop the rest."""
import grpc
import pytest

from cardgate.v1 import authorization_pb2 as a, common_pb2, forecourt_pb2, forecourt_pb2_grpc

from helpers import (CoreThatFailsOn, balance, eur, funded_card, issue, load, make_pan, new_id,
                     snapshot)

R = common_pb2


def op(**kwargs):
    return forecourt_pb2.ForecourtOperation(**kwargs)


def stream_results(stub, messages):
    """Every OperationResult of one AuthorizeStream call, in the order they came."""
    return [r for response in stub.AuthorizeStream(iter(messages), timeout=30)
            for r in response.results]


def test_a_batch_of_pump_operations_is_answered_in_order(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 1, 500_00)
    stub = forecourt_pb2_grpc.ForecourtServiceStub(gw.channel)
    hold_id, pay_id = new_id(), new_id()
    batch = forecourt_pb2.AuthorizeBatchRequest(operations=[
        op(preauthorize=a.PreAuthorizeRequest(request_id=hold_id, pan=pan, amount=eur(100_00))),
        op(complete=a.CompletePreAuthorizationRequest(request_id=new_id(), pan=pan,
                                                     hold_id=hold_id, amount=eur(64_21))),
        op(purchase=a.PurchaseRequest(request_id=pay_id, pan=pan, amount=eur(10_00))),
        op(purchase=a.PurchaseRequest(request_id="not-a-uuid", pan=pan, amount=eur(1_00))),
        op(purchase=a.PurchaseRequest(request_id=pay_id, pan=pan, amount=eur(11_00))),
        op(purchase=a.PurchaseRequest(request_id=new_id(), pan=make_pan(99), amount=eur(1_00))),
        op(),
        op(refund=a.RefundRequest(request_id=new_id(), pan=pan, amount=eur(10_00),
                                  original_request_id=pay_id)),
    ])
    answer = stub.AuthorizeBatch(batch)
    r = answer.results
    assert len(r) == 8
    assert r[0].authorization.result_code == R.RESULT_CODE_APPROVED and r[0].request_id == hold_id
    assert r[1].authorization.approved.amount_minor == 64_21
    assert r[2].authorization.result_code == R.RESULT_CODE_APPROVED
    assert r[3].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "operations[3].request_id" in r[3].error.message
    assert r[4].error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert r[5].authorization.result_code == R.RESULT_CODE_DECLINED_UNKNOWN_CARD
    assert r[6].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert r[7].authorization.balance.balance_minor == 500_00 - 64_21
    assert balance(gw, pan).balance_minor == 500_00 - 64_21
    # The controller lost the answer and sends the batch again: the same answers.
    before = snapshot(gw.gateway.store)["journal"]
    again = stub.AuthorizeBatch(batch)
    assert [x.authorization for x in again.results] == [x.authorization for x in r]
    assert snapshot(gw.gateway.store)["journal"] == before


def test_a_batch_naming_another_outlet_is_refused_whole(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 2, 100_00)
    stub = forecourt_pb2_grpc.ForecourtServiceStub(gw.channel)
    batch = forecourt_pb2.AuthorizeBatchRequest(operations=[
        op(purchase=a.PurchaseRequest(request_id=new_id(), pan=pan, amount=eur(1_00))),
        op(purchase=a.PurchaseRequest(request_id=new_id(), pan=pan, amount=eur(1_00),
                                      acceptor=common_pb2.Acceptor(outlet_id="o2"))),
    ])
    with pytest.raises(grpc.RpcError) as caught:
        stub.AuthorizeBatch(batch)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert balance(gw, pan).balance_minor == 100_00


def test_a_batch_over_its_size_limit_is_invalid(live_gateway):
    stub = forecourt_pb2_grpc.ForecourtServiceStub(live_gateway.channel)
    batch = forecourt_pb2.AuthorizeBatchRequest(operations=[op() for _ in range(501)])
    with pytest.raises(grpc.RpcError) as caught:
        stub.AuthorizeBatch(batch)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 500" in caught.value.details()


def test_a_controller_streams_operations_and_gets_every_answer(live_gateway):
    gw = live_gateway
    pans = [funded_card(gw, 10, 1_000_00)]
    for serial in (11, 12):
        pans.append(make_pan(serial))
        issue(gw, [pans[-1]])
        load(gw, pans[-1], 1_000_00)
    stub = forecourt_pb2_grpc.ForecourtServiceStub(gw.channel)
    ids = [new_id() for _ in range(60)]
    operations = [op(purchase=a.PurchaseRequest(request_id=rid, pan=pans[i % 3], amount=eur(1_00)))
                  for i, rid in enumerate(ids)]
    operations.append(op(purchase=a.PurchaseRequest(request_id=ids[0], pan=pans[0],
                                                    amount=eur(1_00))))      # a retry
    operations.append(op(purchase=a.PurchaseRequest(request_id="bad", pan=pans[0], amount=eur(1))))
    # Mostly one operation per message, the last few sent together in one.
    messages = [forecourt_pb2.AuthorizeStreamRequest(operations=[o]) for o in operations[:-3]]
    messages.append(forecourt_pb2.AuthorizeStreamRequest(operations=operations[-3:]))
    results = stream_results(stub, messages)
    assert len(results) == len(operations)
    by_id = {}
    for r in results:
        by_id.setdefault(r.request_id, []).append(r)
    assert all(by_id[rid][0].authorization.result_code == R.RESULT_CODE_APPROVED for rid in ids)
    assert by_id[ids[0]][0].authorization == by_id[ids[0]][1].authorization   # retried: same
    assert by_id["bad"][0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [balance(gw, p).balance_minor for p in pans] == [1_000_00 - 20_00] * 3


def test_a_stream_item_for_another_outlet_is_refused_alone(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 13, 100_00)
    stub = forecourt_pb2_grpc.ForecourtServiceStub(gw.channel)
    good, bad = new_id(), new_id()
    results = stream_results(stub, [forecourt_pb2.AuthorizeStreamRequest(operations=[
        op(purchase=a.PurchaseRequest(request_id=bad, pan=pan, amount=eur(1_00),
                                      acceptor=common_pb2.Acceptor(outlet_id="o2"))),
        op(purchase=a.PurchaseRequest(request_id=good, pan=pan, amount=eur(1_00)))])])
    outcome = {r.request_id: r for r in results}
    assert outcome[bad].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert outcome[good].authorization.result_code == R.RESULT_CODE_APPROVED
    assert balance(gw, pan).balance_minor == 99_00


def test_an_unexpected_failure_of_one_streamed_operation_is_answered_and_the_rest_go_on(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 14, 100_00)
    ops = gw.gateway.operations
    broken = new_id()
    real = ops.pack_operation

    def pack_operation(kind, message):
        if message.request_id == broken:
            raise RuntimeError("a bug while packing")
        return real(kind, message)
    ops.pack_operation = pack_operation
    try:
        stub = forecourt_pb2_grpc.ForecourtServiceStub(gw.channel)
        fine = new_id()
        results = stream_results(stub, [forecourt_pb2.AuthorizeStreamRequest(operations=[
            op(purchase=a.PurchaseRequest(request_id=broken, pan=pan, amount=eur(1_00))),
            op(purchase=a.PurchaseRequest(request_id=fine, pan=pan, amount=eur(1_00)))])])
    finally:
        ops.pack_operation = real
    assert sorted(r.WhichOneof("outcome") for r in results) == ["authorization", "error"]
    error = next(r.error for r in results if r.WhichOneof("outcome") == "error")
    assert error.code == grpc.StatusCode.INTERNAL.value[0]
    assert balance(gw, pan).balance_minor == 99_00


def test_an_operation_the_core_fails_on_fails_alone_in_its_batch(live_gateway, monkeypatch):
    """Ten pump sales in one AuthorizeBatch, the core failing on the sixth: nine answered
    and committed, the sixth an INTERNAL error naming it, nothing of it written."""
    import uuid

    from cardgate.gateway.store import writer as writer_mod

    gw = live_gateway
    pan = funded_card(gw, 3, 500_00)
    ids = [new_id() for _ in range(10)]
    monkeypatch.setattr(writer_mod, "ledger",
                        CoreThatFailsOn(writer_mod.ledger, uuid.UUID(ids[5]).bytes))
    stub = forecourt_pb2_grpc.ForecourtServiceStub(gw.channel)
    answer = stub.AuthorizeBatch(forecourt_pb2.AuthorizeBatchRequest(operations=[
        op(purchase=a.PurchaseRequest(request_id=i, pan=pan, amount=eur(1_00))) for i in ids]))
    failed = [r for r in answer.results if r.HasField("error")]
    assert [r.request_id for r in failed] == [ids[5]]
    assert failed[0].error.code == grpc.StatusCode.INTERNAL.value[0] and ids[5] in failed[0].error.message
    assert [r.authorization.result_code for r in answer.results if not r.HasField("error")] == \
        [R.RESULT_CODE_APPROVED] * 9
    assert balance(gw, pan).balance_minor == 500_00 - 9 * 1_00
