"""Bad input: each gets a specific result code or INVALID_ARGUMENT naming the field,
and changes nothing (a declined request leaves only its idempotency record)."""
import grpc
import pytest

from cardgate.fastcore import records
from cardgate.v1 import authorization_pb2, common_pb2, issuing_pb2

from conftest import LiveGateway
from helpers import (create_range, declined_changing_nothing_but_its_record, eur,
                     invalid_changing_nothing, issue, load, make_pan, new_id, purchase, refund,
                     request_count)

PAN = make_pan(1)


@pytest.fixture
def gw(live_gateway):
    create_range(live_gateway)
    issue(live_gateway, [PAN])
    load(live_gateway, PAN, 100_00)
    return live_gateway


def store(gw):
    return gw.gateway.store


def assert_declined_changing_nothing_but_its_record(gw, call, result_code):
    return declined_changing_nothing_but_its_record(store(gw), call, result_code)


def assert_invalid_changing_nothing(gw, call, field, code=grpc.StatusCode.INVALID_ARGUMENT):
    return invalid_changing_nothing(store(gw), call, field, code, secret=PAN)


def test_unknown_card_is_declined(gw):
    assert_declined_changing_nothing_but_its_record(
        gw, lambda: purchase(gw, make_pan(999), 1_00), common_pb2.RESULT_CODE_DECLINED_UNKNOWN_CARD)


def test_blocked_card_is_declined(gw):
    blocked = gw.issuing.SetCardStatus(issuing_pb2.SetCardStatusRequest(
        request_id=new_id(), pan=PAN, status=authorization_pb2.CARD_STATUS_BLOCKED))
    assert blocked.status == authorization_pb2.CARD_STATUS_BLOCKED
    assert_declined_changing_nothing_but_its_record(
        gw, lambda: purchase(gw, PAN, 1_00), common_pb2.RESULT_CODE_DECLINED_CARD_BLOCKED)
    gw.issuing.SetCardStatus(issuing_pb2.SetCardStatusRequest(
        request_id=new_id(), pan=PAN, status=authorization_pb2.CARD_STATUS_ACTIVE))
    assert purchase(gw, PAN, 1_00).result_code == common_pb2.RESULT_CODE_APPROVED


def test_expired_card_is_declined(tmp_path):
    now = [1_790_000_000]                           # 2026-09-21
    gw = LiveGateway(tmp_path / "data", clock=lambda: now[0])
    try:
        create_range(gw)
        issue(gw, [PAN], expiry_yyyymm=202609)      # valid through September 2026
        assert load(gw, PAN, 10_00).result_code == common_pb2.RESULT_CODE_APPROVED
        now[0] += 30 * 86400                        # October
        assert_declined_changing_nothing_but_its_record(
            gw, lambda: purchase(gw, PAN, 1_00), common_pb2.RESULT_CODE_DECLINED_CARD_EXPIRED)
    finally:
        gw.close()


@pytest.mark.parametrize("amount_minor", [0, -1, -10_000])
def test_zero_or_negative_amount_is_invalid(gw, amount_minor):
    assert_invalid_changing_nothing(gw, lambda: purchase(gw, PAN, amount_minor),
                                    "amount.amount_minor")


@pytest.mark.parametrize("amount_minor", [records.AMOUNT_MINOR_MAX + 1, 2**63 - 1])
def test_overflowing_amount_is_invalid(gw, amount_minor):
    error = assert_invalid_changing_nothing(gw, lambda: load(gw, PAN, amount_minor),
                                            "amount.amount_minor")
    assert "limit" in error.details()


def test_wrong_currency_for_the_card_is_declined(gw):
    assert_declined_changing_nothing_but_its_record(
        gw, lambda: purchase(gw, PAN, 1_00, currency="USD"),
        common_pb2.RESULT_CODE_DECLINED_CURRENCY_MISMATCH)


@pytest.mark.parametrize("currency", ["", "EURO", "eur", "XXX"])
def test_unknown_currency_code_is_invalid(gw, currency):
    assert_invalid_changing_nothing(gw, lambda: purchase(gw, PAN, 1_00, currency=currency),
                                    "amount.currency")


def test_missing_request_id_is_invalid(gw):
    error = assert_invalid_changing_nothing(gw, lambda: gw.auth.Purchase(
        authorization_pb2.PurchaseRequest(pan=PAN, amount=eur(1_00))), "request_id")
    assert "missing" in error.details()


@pytest.mark.parametrize("request_id", ["abc", "123e4567e89b42d3a456426614174000",
                                        "{123e4567-e89b-42d3-a456-426614174000}", "x" * 5000])
def test_malformed_request_id_is_invalid(gw, request_id):
    assert_invalid_changing_nothing(gw, lambda: purchase(gw, PAN, 1_00, request_id=request_id),
                                    "request_id")


@pytest.mark.parametrize("pan", ["", "1234", "62770000000000000000000", make_pan(5)[:-1] + "0"
                                 if make_pan(5)[-1] != "0" else make_pan(5)[:-1] + "1", "6277abc"])
def test_malformed_card_number_is_invalid(gw, pan):
    assert_invalid_changing_nothing(gw, lambda: purchase(gw, pan, 1_00), "pan")


def test_refund_larger_than_what_is_left_is_declined(gw):
    pay_id = new_id()
    purchase(gw, PAN, 30_00, request_id=pay_id)
    assert refund(gw, PAN, 20_00, pay_id).result_code == common_pb2.RESULT_CODE_APPROVED
    assert_declined_changing_nothing_but_its_record(
        gw, lambda: refund(gw, PAN, 10_01, pay_id),
        common_pb2.RESULT_CODE_DECLINED_REFUND_EXCEEDS_ORIGINAL)
    assert refund(gw, PAN, 10_00, pay_id).result_code == common_pb2.RESULT_CODE_APPROVED


def test_refund_of_unknown_original_is_declined(gw):
    assert_declined_changing_nothing_but_its_record(
        gw, lambda: refund(gw, PAN, 1_00, new_id()), common_pb2.RESULT_CODE_DECLINED_ORIGINAL_NOT_FOUND)


def test_oversized_message_is_refused(gw):
    error = assert_invalid_changing_nothing(
        gw, lambda: purchase(gw, "6" * 100_000, 1_00),
        "", code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert "larger than max" in error.details() or "message" in error.details().lower()


def test_declined_request_retried_gets_the_same_decline(gw):
    rid = new_id()
    first = purchase(gw, PAN, 1_000_00, request_id=rid)
    assert first.result_code == common_pb2.RESULT_CODE_DECLINED_INSUFFICIENT_FUNDS
    load(gw, PAN, 5_000_00)       # now it would pass, but a retry must not change the answer
    count = request_count(store(gw))
    assert purchase(gw, PAN, 1_000_00, request_id=rid) == first
    assert request_count(store(gw)) == count


# ---- fleet sales -------------------------------------------------------------------

def _pump(gw, **fields):
    return lambda: gw.auth.PreAuthorize(authorization_pb2.PreAuthorizeRequest(
        request_id=new_id(), pan=PAN, **{"amount": eur(0), **fields}))


def _sale(gw, lines, **fields):
    return lambda: gw.auth.Purchase(authorization_pb2.PurchaseRequest(
        request_id=new_id(), pan=PAN, amount=eur(fields.pop("amount_minor", 0)), lines=lines,
        **fields)).authorization


def test_unknown_product_codes_are_invalid(gw):
    unknown = [common_pb2.ProductLine(product_code=42, amount_minor=10_00)]
    assert_invalid_changing_nothing(gw, _sale(gw, unknown), "product_code")
    assert_invalid_changing_nothing(gw, _pump(gw, amount=eur(10_00), product_codes=[42]),
                                    "product_code")
    assert_invalid_changing_nothing(gw, _sale(gw, [common_pb2.ProductLine(
        product_code=256, amount_minor=10_00)]), "lines[0].product_code")


def test_a_volume_without_unit_price_is_invalid_where_it_must_be_priced(gw):
    assert_invalid_changing_nothing(gw, _pump(gw, volume_ml=40_000), "unit_price_minor")
    assert_invalid_changing_nothing(
        gw, _sale(gw, [common_pb2.ProductLine(product_code=1, volume_ml=40_000)]),
        "lines[0].unit_price_minor")
    assert_invalid_changing_nothing(
        gw, _sale(gw, [common_pb2.ProductLine(product_code=1)]), "lines[0]")
    # Lines that do not add up to the amount charged are refused too.
    assert_invalid_changing_nothing(
        gw, _sale(gw, [common_pb2.ProductLine(product_code=1, amount_minor=10_00)],
                  amount_minor=11_00), "amount.amount_minor")


@pytest.mark.parametrize("odometer", [-1, -10**12, records.ODOMETER_MAX + 1])
def test_a_negative_or_absurd_odometer_is_invalid(gw, odometer):
    assert_invalid_changing_nothing(
        gw, _sale(gw, [], amount_minor=10_00, fleet=common_pb2.FleetData(odometer_km=odometer)),
        "fleet.odometer_km")
    assert_invalid_changing_nothing(gw, _pump(gw, amount=eur(10_00),
                                              fleet=common_pb2.FleetData(odometer_km=odometer)),
                                    "fleet.odometer_km")


@pytest.mark.parametrize("volume_ml", [-1, records.VOLUME_ML_MAX + 1])
def test_negative_or_absurd_volumes_are_invalid(gw, volume_ml):
    assert_invalid_changing_nothing(gw, _pump(gw, amount=eur(10_00), volume_ml=volume_ml), "volume_ml")
