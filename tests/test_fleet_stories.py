"""Fleet fuel cards, told as stories over real gRPC (mutual TLS): a terminal of merchant
m1 / outlet o1 (region "north") sells; an operator configures profiles and contracts."""
import time

import grpc
import pytest

from cardgate.v1 import authorization_pb2, common_pb2, fleet_pb2, forecourt_pb2, forecourt_pb2_grpc

from conftest import LiveGateway
from helpers import (balance, beyond_request_records, create_range, eur, issue, load, make_pan,
                     new_id, snapshot)

R = common_pb2
DIESEL, PETROL, SHOP = 19, 1, 200
DAY, TRANSACTION = R.LIMIT_PERIOD_DAY, R.LIMIT_PERIOD_TRANSACTION
MONEY, VOLUME = R.LIMIT_MEASURE_MONEY, R.LIMIT_MEASURE_VOLUME
DIESEL_PRICE = 5_000          # 50.00 a litre: 64.210 L cost 3,210.50


def configured(gw, response):
    assert response.result_code == R.RESULT_CODE_APPROVED, response
    return response


def catalog_and_outlet(gw):
    for code, kind, name in ((DIESEL, fleet_pb2.PRODUCT_KIND_FUEL, "diesel"),
                             (PETROL, fleet_pb2.PRODUCT_KIND_FUEL, "petrol 95"),
                             (SHOP, fleet_pb2.PRODUCT_KIND_OTHER, "shop")):
        configured(gw, gw.fleet.DefineProduct(fleet_pb2.DefineProductRequest(
            request_id=new_id(), product_code=code, kind=kind, name=name)))
    configured(gw, gw.fleet.DefineOutlet(fleet_pb2.DefineOutletRequest(
        request_id=new_id(), merchant_id="m1", outlet_id="o1", region="north")))


def fleet_card(gw, serial, profile_id=1, funds=10_000_00, **profile):
    """A loaded card with its own restriction profile (diesel only unless told)."""
    if serial == 1:
        create_range(gw)
        catalog_and_outlet(gw)
    profile = {"allowed_fuel_codes": [DIESEL], "restrict_fuels": True, **profile}
    configured(gw, gw.fleet.SetRestrictionProfile(fleet_pb2.SetRestrictionProfileRequest(
        request_id=new_id(), profile_id=profile_id, **profile)))
    pan = make_pan(serial)
    issue(gw, [pan])
    configured(gw, gw.fleet.AssignCard(fleet_pb2.AssignCardRequest(
        request_id=new_id(), pan=pan, profile_id=profile_id)))
    assert load(gw, pan, funds).result_code == R.RESULT_CODE_APPROVED
    return pan


def diesel(volume_ml, price=DIESEL_PRICE):
    return common_pb2.ProductLine(product_code=DIESEL, volume_ml=volume_ml, unit_price_minor=price)


def fleet_data(odometer=None, driver=""):
    data = common_pb2.FleetData(driver_id=driver)
    if odometer is not None:
        data.odometer_km = odometer
    return data


def preauthorize(gw, pan, amount_minor=0, volume_ml=0, odometer=None, products=(DIESEL,),
                 price=DIESEL_PRICE, **kw):
    return gw.auth.PreAuthorize(authorization_pb2.PreAuthorizeRequest(
        request_id=kw.pop("request_id", None) or new_id(), pan=pan, amount=eur(amount_minor),
        volume_ml=volume_ml, unit_price_minor=price, product_codes=products,
        fleet=fleet_data(odometer), **kw))


def complete(gw, pan, hold_id, lines):
    return gw.auth.CompletePreAuthorization(authorization_pb2.CompletePreAuthorizationRequest(
        request_id=new_id(), pan=pan, hold_id=hold_id, amount=eur(0), lines=lines)).authorization


def sell(gw, pan, lines, odometer=None, request_id=None, amount_minor=0, driver=""):
    return gw.auth.Purchase(authorization_pb2.PurchaseRequest(
        request_id=request_id or new_id(), pan=pan, amount=eur(amount_minor), lines=lines,
        fleet=fleet_data(odometer, driver))).authorization


def usage(gw, pan):
    return gw.fleet.GetFleetUsage(fleet_pb2.GetFleetUsageRequest(pan=pan))


def day_of(u):
    return next(p for p in u.periods if p.period == DAY)


def test_pump_5000_held_3210_55_dispensed_for_64_210_litres_of_diesel_counts_against_the_day(live_gateway):
    gw = live_gateway
    pan = fleet_card(gw, 1, limits=[R.Limit(period=DAY, measure=VOLUME, max=100_000)])
    held = preauthorize(gw, pan, 5_000_00)
    assert held.authorization.result_code == R.RESULT_CODE_APPROVED
    assert held.authorization.volume_ml == 100_000    # the pump stops at the day's 100 L
    assert usage(gw, pan).reserved.volume_ml == 100_000

    # The pump's own total for the line (its price per litre has more decimals).
    line = common_pb2.ProductLine(product_code=DIESEL, volume_ml=64_210, amount_minor=3_210_55)
    done = complete(gw, pan, held.hold_id, [line])
    assert done.result_code == R.RESULT_CODE_APPROVED
    assert done.approved.amount_minor == 3_210_55 and done.volume_ml == 64_210
    after = balance(gw, pan)
    assert (after.balance_minor, after.pending_minor) == (10_000_00 - 3_210_55, 0)
    counted = usage(gw, pan)
    assert (day_of(counted).volume_ml, day_of(counted).money_minor, day_of(counted).count) == \
        (64_210, 3_210_55, 1)
    assert (counted.reserved.money_minor, counted.reserved.volume_ml, counted.reserved.count) == (0, 0, 0)
    # What is left of the day is what the next pump may dispense.
    assert preauthorize(gw, pan, 5_000_00).authorization.volume_ml == 100_000 - 64_210


def test_fleet_card_without_odometer_is_told_to_collect_it_and_may_not_go_backwards(live_gateway):
    gw = live_gateway
    pan = fleet_card(gw, 1, required_prompts=[R.PROMPT_ODOMETER, R.PROMPT_DRIVER_ID])
    missing = sell(gw, pan, [diesel(20_000)])
    assert missing.result_code == R.RESULT_CODE_DECLINED_PROMPT_REQUIRED
    assert list(missing.missing_prompts) == [R.PROMPT_ODOMETER, R.PROMPT_DRIVER_ID]
    assert "odometer" in missing.message and "driver id" in missing.message
    assert balance(gw, pan).balance_minor == 10_000_00

    approved = sell(gw, pan, [diesel(20_000)], odometer=120_500, driver="D-17")
    assert approved.result_code == R.RESULT_CODE_APPROVED
    assert approved.approved.amount_minor == 1_000_00
    assert usage(gw, pan).odometer_km == 120_500

    lower = sell(gw, pan, [diesel(10_000)], odometer=120_499, driver="D-17")
    assert lower.result_code == R.RESULT_CODE_DECLINED_ODOMETER_BACKWARDS
    assert usage(gw, pan).odometer_km == 120_500
    assert sell(gw, pan, [diesel(10_000)], odometer=120_500, driver="D-17").result_code == \
        R.RESULT_CODE_APPROVED                           # the same reading again is fine


def test_diesel_only_card_cannot_buy_petrol_nor_shop_goods_unless_allowed(live_gateway):
    gw = live_gateway
    pan = fleet_card(gw, 1)
    petrol = [common_pb2.ProductLine(product_code=PETROL, volume_ml=30_000, unit_price_minor=6_000)]
    before = snapshot(gw.gateway.store)
    assert sell(gw, pan, petrol).result_code == R.RESULT_CODE_DECLINED_PRODUCT_NOT_ALLOWED
    assert preauthorize(gw, pan, 100_00, products=(PETROL,)).authorization.result_code == \
        R.RESULT_CODE_DECLINED_PRODUCT_NOT_ALLOWED
    coffee = [common_pb2.ProductLine(product_code=SHOP, amount_minor=3_50)]
    assert sell(gw, pan, coffee).result_code == R.RESULT_CODE_DECLINED_PRODUCT_NOT_ALLOWED
    after = snapshot(gw.gateway.store)
    assert beyond_request_records(after) == \
        beyond_request_records(before)
    assert sell(gw, pan, [diesel(30_000)]).result_code == R.RESULT_CODE_APPROVED

    shop_ok = fleet_card(gw, 2, profile_id=2, non_fuel_allowed=True,
                         limits=[R.Limit(period=DAY, measure=VOLUME, max=40_000)])
    assert sell(gw, shop_ok, coffee + [diesel(40_000)]).result_code == R.RESULT_CODE_APPROVED
    # The day's litres are used up: no more fuel, but shop goods still sell.
    assert sell(gw, shop_ok, [diesel(1_000)]).result_code == R.RESULT_CODE_DECLINED_LIMIT_EXCEEDED
    assert preauthorize(gw, shop_ok, 50_00).authorization.result_code == \
        R.RESULT_CODE_DECLINED_LIMIT_EXCEEDED
    assert sell(gw, shop_ok, coffee).result_code == R.RESULT_CODE_APPROVED


@pytest.mark.parametrize("soft", [False, True])
def test_daily_100_litres_second_fill_is_declined_hard_or_flagged_soft(live_gateway, soft):
    gw = live_gateway
    pan = fleet_card(gw, 1, limits=[R.Limit(period=DAY, measure=VOLUME, max=100_000, soft=soft)])
    first = preauthorize(gw, pan, 5_000_00)
    assert complete(gw, pan, first.hold_id, [diesel(64_210)]).result_code == R.RESULT_CODE_APPROVED

    second = preauthorize(gw, pan, volume_ml=50_000)       # priced: 50 L at 50.00 = 2,500.00
    auth = second.authorization
    if not soft:
        assert auth.result_code == R.RESULT_CODE_DECLINED_LIMIT_EXCEEDED
        assert (auth.limit.period, auth.limit.measure, auth.limit.soft) == (DAY, VOLUME, False)
        assert auth.limit.max == 100_000                # what was crossed, as configured
        assert "daily volume limit" in auth.message
        assert usage(gw, pan).reserved.volume_ml == 0
        assert not gw.fleet.ListFlagged(fleet_pb2.ListFlaggedRequest()).transactions
        return
    assert auth.result_code == R.RESULT_CODE_APPROVED and auth.flagged_for_review
    assert auth.approved.amount_minor == 2_500_00 and auth.volume_ml == 50_000
    assert (auth.limit.period, auth.limit.measure, auth.limit.soft) == (DAY, VOLUME, True)
    assert auth.limit.max == 100_000
    flagged = gw.fleet.ListFlagged(fleet_pb2.ListFlaggedRequest()).transactions
    assert [(f.request_id, f.masked_pan, f.limit.period, f.limit.max) for f in flagged] == \
        [(second.hold_id, auth.masked_pan, DAY, 100_000)]
    done = complete(gw, pan, second.hold_id, [diesel(48_000)])
    assert done.result_code == R.RESULT_CODE_APPROVED and done.flagged_for_review
    assert day_of(usage(gw, pan)).volume_ml == 64_210 + 48_000


def test_partial_approval_cuts_a_pump_to_what_the_daily_money_limit_leaves(live_gateway):
    gw = live_gateway
    pan = fleet_card(gw, 1, limits=[R.Limit(period=DAY, measure=MONEY, max=1_000_00)])
    assert sell(gw, pan, [diesel(12_000)]).approved.amount_minor == 600_00
    cut = preauthorize(gw, pan, 1_000_00, partial_approval_ok=True).authorization
    assert cut.result_code == R.RESULT_CODE_PARTIALLY_APPROVED
    assert cut.approved.amount_minor == 400_00
    refused = preauthorize(gw, pan, 1_00).authorization
    assert refused.result_code == R.RESULT_CODE_DECLINED_LIMIT_EXCEEDED   # the hold reserved the rest


def test_outlets_outside_the_allowed_region_are_declined(live_gateway):
    gw = live_gateway
    north = fleet_card(gw, 1, allowed_places=[fleet_pb2.Place(region="north")])
    assert sell(gw, north, [diesel(10_000)]).result_code == R.RESULT_CODE_APPROVED
    elsewhere = fleet_card(gw, 2, profile_id=2, allowed_places=[fleet_pb2.Place(
        outlet=fleet_pb2.OutletRef(merchant_id="m1", outlet_id="o9"))])
    assert sell(gw, elsewhere, [diesel(10_000)]).result_code == \
        R.RESULT_CODE_DECLINED_OUTLET_NOT_ALLOWED
    here = fleet_card(gw, 3, profile_id=3, allowed_places=[fleet_pb2.Place(
        outlet=fleet_pb2.OutletRef(merchant_id="m1", outlet_id="o1"))])
    assert sell(gw, here, [diesel(10_000)]).result_code == R.RESULT_CODE_APPROVED


def test_weekdays_06_to_22_local_time_only(tmp_path):
    now = [1_790_199_000]
    gw = LiveGateway(tmp_path / "data", clock=lambda: now[0])
    try:
        assert time.gmtime(now[0])[:5] == (2026, 9, 23, 21, 30)     # Wednesday 21:30 UTC
        pan = fleet_card(gw, 1, allowed_days=[1, 2, 3, 4, 5], minute_from=6 * 60,
                         minute_to=22 * 60, utc_offset_min=60)        # Mon-Fri, 06-22 at UTC+1
        late = sell(gw, pan, [diesel(10_000)])
        assert late.result_code == R.RESULT_CODE_DECLINED_TIME_NOT_ALLOWED      # 22:30 local
        now[0] += 9 * 3600                                          # Thursday 07:30 local
        assert sell(gw, pan, [diesel(10_000)]).result_code == R.RESULT_CODE_APPROVED
        now[0] += 2 * 86400                                         # Saturday 07:30 local
        assert sell(gw, pan, [diesel(10_000)]).result_code == R.RESULT_CODE_DECLINED_TIME_NOT_ALLOWED
    finally:
        gw.close()


def test_contract_cards_share_a_credit_limit_and_holds_count_against_it(live_gateway):
    gw = live_gateway
    create_range(gw)
    catalog_and_outlet(gw)
    configured(gw, gw.fleet.SetContract(fleet_pb2.SetContractRequest(
        request_id=new_id(), contract_id=7, currency="EUR", credit_limit_minor=3_000_00)))
    trucks = [make_pan(11), make_pan(12)]
    issue(gw, trucks)
    for pan in trucks:
        configured(gw, gw.fleet.AssignCard(fleet_pb2.AssignCardRequest(
            request_id=new_id(), pan=pan, contract_id=7)))
        assert load(gw, pan, 1).result_code == R.RESULT_CODE_APPROVED   # activates; pays in 0.01

    held = preauthorize(gw, trucks[0], 2_500_00, products=())
    assert held.authorization.result_code == R.RESULT_CODE_APPROVED
    shown = held.authorization.balance
    assert (shown.balance_minor, shown.pending_minor, shown.credit_limit_minor,
            shown.available_minor) == (2, 2_500_00, 3_000_00, 500_02)
    over = preauthorize(gw, trucks[1], 600_00, products=()).authorization
    assert over.result_code == R.RESULT_CODE_DECLINED_CREDIT_LIMIT_EXCEEDED
    assert balance(gw, trucks[1]).available_minor == 500_02              # the same account

    assert complete(gw, trucks[0], held.hold_id, [diesel(40_000)]).approved.amount_minor == 2_000_00
    assert preauthorize(gw, trucks[1], 600_00, products=()).authorization.result_code == \
        R.RESULT_CODE_APPROVED
    # The contract owes 2,600.00 (less 0.02 paid in): its limit cannot drop below that.
    lower = gw.fleet.SetContract(fleet_pb2.SetContractRequest(
        request_id=new_id(), contract_id=7, currency="EUR", credit_limit_minor=2_000_00))
    assert lower.result_code == R.RESULT_CODE_DECLINED_CREDIT_LIMIT_EXCEEDED


def test_a_forecourt_batch_carries_fleet_data_and_each_pump_gets_its_own_answer(live_gateway):
    gw = live_gateway
    pan = fleet_card(gw, 1, required_prompts=[R.PROMPT_ODOMETER],
                     limits=[R.Limit(period=DAY, measure=VOLUME, max=100_000)])
    stub = forecourt_pb2_grpc.ForecourtServiceStub(gw.channel)
    pump_1, pump_2 = new_id(), new_id()

    def hold(request_id, odometer=None):
        return forecourt_pb2.ForecourtOperation(preauthorize=authorization_pb2.PreAuthorizeRequest(
            request_id=request_id, pan=pan, amount=eur(5_000_00), product_codes=[DIESEL],
            fleet=fleet_data(odometer)))

    first = stub.AuthorizeBatch(forecourt_pb2.AuthorizeBatchRequest(operations=[
        hold(pump_1, odometer=88_000), hold(pump_2),
        forecourt_pb2.ForecourtOperation(purchase=authorization_pb2.PurchaseRequest(
            request_id=new_id(), pan=pan, amount=eur(10_00), lines=[common_pb2.ProductLine(
                product_code=77, amount_minor=10_00)]))])).results
    assert first[0].authorization.result_code == R.RESULT_CODE_APPROVED
    assert first[0].authorization.volume_ml == 100_000
    assert first[1].authorization.result_code == R.RESULT_CODE_DECLINED_PROMPT_REQUIRED
    assert list(first[1].authorization.missing_prompts) == [R.PROMPT_ODOMETER]
    assert first[2].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]   # product 77 unknown

    second = stub.AuthorizeBatch(forecourt_pb2.AuthorizeBatchRequest(operations=[
        forecourt_pb2.ForecourtOperation(complete=authorization_pb2.CompletePreAuthorizationRequest(
            request_id=new_id(), pan=pan, hold_id=pump_1, amount=eur(0), lines=[diesel(64_210)])),
        hold(new_id(), odometer=88_001)])).results          # pump 2 again, with the odometer
    assert second[0].authorization.approved.amount_minor == 3_210_50
    # The second pump is cut to what the day has left once the first one settled.
    assert second[1].authorization.volume_ml == 100_000 - 64_210
