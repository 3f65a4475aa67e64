"""PIN policy over the wire: a card with a PIN, under its range's policy (required unless
the range says optional or not used, or a restriction profile says its own), is declined
DECLINED_PIN_REQUIRED without it: by unary Purchase and PreAuthorize, in a forecourt
batch and on a forecourt stream alike."""
import grpc
import pytest

from cardgate.v1 import (authorization_pb2, common_pb2, fleet_pb2, forecourt_pb2,
                         forecourt_pb2_grpc, issuing_pb2, issuing_pb2_grpc)

from helpers import eur, issue, load, make_pan, new_id

R = common_pb2
PIN = "4321"


def card_with_pin(gw, policy=R.PIN_POLICY_UNSPECIFIED, serial=1):
    gw.issuing.CreateCardRange(issuing_pb2.CreateCardRangeRequest(
        request_id=new_id(), range_id=serial, iin_prefix=f"62770{serial}", pan_length=16,
        currency="EUR", name="PIN cards", pin_policy=policy))
    pan = make_pan(1, f"62770{serial}")
    issue(gw, [pan], serial)
    load(gw, pan, 100_00)
    bureau = issuing_pb2_grpc.IssuingServiceStub(gw.open("bureau-1"))
    assert bureau.SetCardPin(issuing_pb2.SetCardPinRequest(
        request_id=new_id(), pan=pan, pin=PIN)).result_code == R.RESULT_CODE_APPROVED
    return pan


def purchase(pan, pin=""):
    return authorization_pb2.PurchaseRequest(request_id=new_id(), pan=pan, amount=eur(1_00),
                                             pin=pin)


def preauth(pan, pin=""):
    return authorization_pb2.PreAuthorizeRequest(request_id=new_id(), pan=pan, amount=eur(1_00),
                                                 pin=pin)


def every_way(gw, pan, pin=""):
    """The result of a purchase by each path a terminal has: unary purchase and
    pre-authorization, a forecourt batch, a forecourt stream."""
    forecourt = forecourt_pb2_grpc.ForecourtServiceStub(gw.channel)
    batch = forecourt.AuthorizeBatch(forecourt_pb2.AuthorizeBatchRequest(operations=[
        forecourt_pb2.ForecourtOperation(purchase=purchase(pan, pin)),
        forecourt_pb2.ForecourtOperation(preauthorize=preauth(pan, pin))]), timeout=10)
    streamed = next(forecourt.AuthorizeStream(iter([forecourt_pb2.AuthorizeStreamRequest(
        operations=[forecourt_pb2.ForecourtOperation(purchase=purchase(pan, pin))])]), timeout=10))
    return {gw.auth.Purchase(purchase(pan, pin)).authorization.result_code,
            gw.auth.PreAuthorize(preauth(pan, pin)).authorization.result_code,
            *(r.authorization.result_code for r in batch.results),
            streamed.results[0].authorization.result_code}


def test_a_pin_that_is_set_is_required_by_default_on_every_path(live_gateway):
    pan = card_with_pin(live_gateway)
    assert every_way(live_gateway, pan) == {R.RESULT_CODE_DECLINED_PIN_REQUIRED}
    assert live_gateway.auth.Purchase(purchase(pan, "1111")).authorization.result_code == \
        R.RESULT_CODE_DECLINED_WRONG_PIN
    assert every_way(live_gateway, pan, PIN) == {R.RESULT_CODE_APPROVED}   # right: count reset
    # Three wrong PINs in a row block the card, whatever path they came by.
    results = sorted(every_way(live_gateway, pan, "1111"))
    assert results == [R.RESULT_CODE_DECLINED_CARD_BLOCKED, R.RESULT_CODE_DECLINED_WRONG_PIN]


@pytest.mark.parametrize("policy,without,wrong", [
    (R.PIN_POLICY_OPTIONAL, R.RESULT_CODE_APPROVED, R.RESULT_CODE_DECLINED_WRONG_PIN),
    (R.PIN_POLICY_NOT_USED, R.RESULT_CODE_APPROVED, R.RESULT_CODE_APPROVED),
])
def test_a_range_may_make_the_pin_optional_or_unused(live_gateway, policy, without, wrong):
    pan = card_with_pin(live_gateway, policy)
    assert live_gateway.auth.Purchase(purchase(pan)).authorization.result_code == without
    assert live_gateway.auth.Purchase(purchase(pan, "1111")).authorization.result_code == wrong


def test_a_restriction_profile_sets_its_own_policy(live_gateway):
    gw = live_gateway
    pan = card_with_pin(gw)
    profile = gw.fleet.SetRestrictionProfile(fleet_pb2.SetRestrictionProfileRequest(
        request_id=new_id(), profile_id=4, non_fuel_allowed=True,
        pin_policy=R.PIN_POLICY_NOT_USED))
    assert profile.result_code == R.RESULT_CODE_APPROVED, profile
    gw.fleet.AssignCard(fleet_pb2.AssignCardRequest(request_id=new_id(), pan=pan, profile_id=4))
    assert gw.auth.Purchase(purchase(pan)).authorization.result_code == R.RESULT_CODE_APPROVED
    with pytest.raises(grpc.RpcError) as refused:
        gw.fleet.SetRestrictionProfile(fleet_pb2.SetRestrictionProfileRequest(
            request_id=new_id(), profile_id=5, pin_policy=9))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("pin_policy")
