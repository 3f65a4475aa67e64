"""Answers say what happened, in the terms the client used: a sale priced by its lines
alone is charged in the card's currency, a sale that prices to nothing is refused naming
what the client sent, and the original that arrives after its blind reversal is declined
with the card described as it is. Over real gRPC (mutual TLS)."""
from cardgate.v1 import authorization_pb2, common_pb2, fleet_pb2

from helpers import funded_card, invalid_changing_nothing, make_pan, new_id, reverse

R = common_pb2
DIESEL = 1


def define_diesel(gw):
    assert gw.fleet.DefineProduct(fleet_pb2.DefineProductRequest(
        request_id=new_id(), product_code=DIESEL, kind=fleet_pb2.PRODUCT_KIND_FUEL,
        name="diesel")).result_code == R.RESULT_CODE_APPROVED


def diesel(volume_ml, price_minor):
    return common_pb2.ProductLine(product_code=DIESEL, volume_ml=volume_ml,
                                  unit_price_minor=price_minor)


def test_a_purchase_priced_by_its_lines_alone_is_charged_in_the_cards_currency(live_gateway):
    gw = live_gateway
    define_diesel(gw)
    pan = funded_card(gw, 1, 100_00)
    paid = gw.auth.Purchase(authorization_pb2.PurchaseRequest(
        request_id=new_id(), pan=pan, lines=[diesel(20_000, 1_60)])).authorization
    assert paid.result_code == R.RESULT_CODE_APPROVED, paid.message
    assert (paid.approved.amount_minor, paid.approved.currency) == (32_00, "EUR")
    assert paid.balance.balance_minor == 68_00
    # a card not known has no currency to stand in: the refusal says so
    error = invalid_changing_nothing(gw.gateway.store, lambda: gw.auth.Purchase(
        authorization_pb2.PurchaseRequest(request_id=new_id(), pan=make_pan(999),
                                          lines=[diesel(20_000, 1_60)])), "amount.currency")
    assert "card is not known" in error.details()


def test_a_sale_that_prices_to_nothing_is_refused_naming_what_was_sent(live_gateway):
    gw = live_gateway
    define_diesel(gw)
    pan = funded_card(gw, 2, 100_00)
    error = invalid_changing_nothing(gw.gateway.store, lambda: gw.auth.Purchase(
        authorization_pb2.PurchaseRequest(request_id=new_id(), pan=pan,
                                          lines=[diesel(1, 1_60)])), "lines")
    assert "amount.amount_minor" not in error.details()
    invalid_changing_nothing(gw.gateway.store, lambda: gw.auth.PreAuthorize(
        authorization_pb2.PreAuthorizeRequest(request_id=new_id(), pan=pan, volume_ml=1,
                                              unit_price_minor=1_60,
                                              amount=common_pb2.Money(currency="EUR"))),
        "volume_ml")


def test_the_original_after_its_blind_reversal_describes_the_card(live_gateway):
    gw = live_gateway
    pan = funded_card(gw, 3, 40_00)
    original_id = new_id()
    assert reverse(gw, original_id).result_code == R.RESULT_CODE_APPROVED
    late = gw.auth.Purchase(authorization_pb2.PurchaseRequest(
        request_id=original_id, pan=pan, amount=common_pb2.Money(amount_minor=5_00,
                                                                 currency="EUR"))).authorization
    assert late.result_code == R.RESULT_CODE_DECLINED_ALREADY_REVERSED
    assert late.masked_pan == pan[:6] + "******" + pan[-4:]
    assert (late.balance.balance_minor, late.balance.available_minor) == (40_00, 40_00)
    assert late.approved.amount_minor == 0
