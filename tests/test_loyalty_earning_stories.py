"""Loyalty earning, told as stories over real gRPC (mutual TLS), with terminals of
several outlets and partners, and the gateway's clock set by the story: earn rules and
tiers at the pump, birthday bonuses, discounts that grow with lifetime spend, returns
after the points were spent, and settlement between the partners of a coalition."""
import calendar
import time

import pytest

from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2, fleet_pb2,
                         loyalty_pb2, loyalty_pb2_grpc)

from conftest import LiveGateway
from helpers import (create_range, declined_changing_nothing_but_its_record, eur,
                     invalid_changing_nothing, issue, load, make_pan, new_id)

R = common_pb2
DIESEL, COFFEE = 1, 30
FUEL_NETWORK, CAFE = 1, 2
DIESEL_PRICE = 1_60                     # a litre
CASH = common_pb2.PAYMENT_METHOD_CASH


def at(year, month, day, hour=12):
    return calendar.timegm((year, month, day, hour, 0, 0))


class Coalition:
    """A gateway with a fuel network (Station 12, Station 7) and a cafe (Aroma) as
    partners, a terminal at each outlet, and card range 1 in program 1."""

    OUTLETS = {"station-12": ("fuelco", "station-12", "Station 12", FUEL_NETWORK),
               "station-7": ("fuelco", "station-7", "Station 7", FUEL_NETWORK),
               "aroma": ("cafe-aroma", "aroma", "Aroma", CAFE)}

    def __init__(self, tmp_path, now):
        self.now = now
        self.gw = LiveGateway(tmp_path / "data", clock=lambda: now[0], writer_idle_tick_s=0.05)
        gw = self.gw
        operator = gw.open("operator-1")
        self.loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(operator)
        create_range(gw)
        for code, kind, name in ((DIESEL, fleet_pb2.PRODUCT_KIND_FUEL, "diesel"),
                                 (COFFEE, fleet_pb2.PRODUCT_KIND_OTHER, "coffee")):
            ok(gw.fleet.DefineProduct(fleet_pb2.DefineProductRequest(
                request_id=new_id(), product_code=code, kind=kind, name=name)))
        self.auth, self.points = {}, {}
        for partner, name in ((FUEL_NETWORK, "Fuelco"), (CAFE, "Cafe Aroma")):
            ok(self.loyalty.DefinePartner(loyalty_pb2.DefinePartnerRequest(
                request_id=new_id(), partner_id=partner, name=name)))
        for name, (merchant, outlet, shown, partner) in self.OUTLETS.items():
            ok(gw.fleet.DefineOutlet(fleet_pb2.DefineOutletRequest(
                request_id=new_id(), merchant_id=merchant, outlet_id=outlet, partner_id=partner,
                display_name=shown)))
            gw.gateway.pki.issue("terminal", name, gw.certs, merchant_id=merchant, outlet_id=outlet)
            channel = gw.open(name)
            self.auth[name] = authorization_pb2_grpc.AuthorizationServiceStub(channel)
            self.points[name] = loyalty_pb2_grpc.LoyaltyServiceStub(channel)

    def program(self, rules=(), **fields):
        fields = {"expiry_kind": loyalty_pb2.POINTS_EXPIRY_KIND_NEVER, **fields}
        ok(self.loyalty.SetProgram(loyalty_pb2.SetProgramRequest(
            request_id=new_id(), program_id=1, range_ids=[1], **fields)))
        ok(self.loyalty.SetEarnRules(loyalty_pb2.SetEarnRulesRequest(
            request_id=new_id(), program_id=1, rules=rules)))

    def card(self, serial, funds=0):
        pan = make_pan(serial)
        issue(self.gw, [pan])
        if funds:
            assert load(self.gw, pan, funds).result_code == R.RESULT_CODE_APPROVED
        return pan

    def sale(self, where, pan, amount_minor, lines=(), request_id=None):
        """A sale paid in cash, the loyalty card shown."""
        return self.points[where].RecordSale(loyalty_pb2.RecordSaleRequest(
            request_id=request_id or new_id(), pan=pan, amount=eur(amount_minor), lines=lines,
            payment_method=CASH)).authorization

    def statement(self, pan):
        return [line.description for line in self.loyalty.GetStatement(
            loyalty_pb2.GetStatementRequest(pan=pan)).lines]

    def balance(self, pan):
        return self.loyalty.GetPoints(loyalty_pb2.GetPointsRequest(pan=pan)).points

    def redeem(self, where, pan, points):
        return self.points[where].RedeemPoints(loyalty_pb2.RedeemPointsRequest(
            request_id=new_id(), pan=pan, points=points)).authorization


def ok(response):
    assert response.result_code == R.RESULT_CODE_APPROVED, response
    return response


@pytest.fixture
def coalition(tmp_path):
    now = [at(2027, 5, 12)]               # a Wednesday
    world = Coalition(tmp_path, now)
    yield world
    world.gw.close()


def litres_of_diesel(ml):
    return common_pb2.ProductLine(product_code=DIESEL, volume_ml=ml, unit_price_minor=DIESEL_PRICE)


def test_50_litres_at_station_12_earn_2_a_litre_times_1_5_for_gold_exactly_150(coalition):
    c = coalition
    station_12 = loyalty_pb2.EarnRule(
        rule_id=1, kind=loyalty_pb2.EARN_RULE_KIND_PER_VOLUME, points=2, per=1000,
        outlets=[fleet_pb2.OutletRef(merchant_id="fuelco", outlet_id="station-12")],
        product_codes=[DIESEL])
    elsewhere = loyalty_pb2.EarnRule(rule_id=2, kind=loyalty_pb2.EARN_RULE_KIND_PER_VOLUME,
                                     points=1, per=1000, product_codes=[DIESEL])
    c.program(rules=[station_12, elsewhere],
              tiers=[loyalty_pb2.Tier(name="Gold", minimum=400_00, multiplier_permille=1500)])
    pan = c.card(1, funds=2_000_00)

    # 300 L at Station 7: 1 a litre; the 480.00 spent lifts the card to Gold at once.
    first = c.auth["station-7"].Purchase(authorization_pb2.PurchaseRequest(
        request_id=new_id(), pan=pan, amount=eur(480_00), lines=[litres_of_diesel(300_000)])).authorization
    assert (first.loyalty.points_earned, first.loyalty.tier, first.loyalty.tier_up) == (300, "Gold", True)

    # At Station 12 the pump holds 100.00, then 50 L are dispensed.
    pump = c.auth["station-12"]
    hold = pump.PreAuthorize(authorization_pb2.PreAuthorizeRequest(
        request_id=new_id(), pan=pan, amount=eur(100_00), product_codes=[DIESEL]))
    assert hold.authorization.result_code == R.RESULT_CODE_APPROVED
    completion = authorization_pb2.CompletePreAuthorizationRequest(
        request_id=new_id(), pan=pan, hold_id=hold.hold_id, amount=eur(80_00),
        lines=[litres_of_diesel(50_000)])
    done = pump.CompletePreAuthorization(completion).authorization
    assert done.approved.amount_minor == 80_00
    assert done.loyalty.points_earned == 150
    assert done.loyalty.explanation == "+150 points: 2 points per litre at Station 12, ×1.5 Gold tier"
    assert done.loyalty.points_balance == 450
    assert c.statement(pan) == ["+150 points: 2 points per litre at Station 12, ×1.5 Gold tier",
                                "+300 points: 1 point per litre at Station 7"]
    member = c.loyalty.GetMember(loyalty_pb2.GetMemberRequest(pan=pan))
    assert (member.tier, member.rolling_total, member.next_tier, member.points) == \
        ("Gold", 560_00, "", 450)
    # The points balance is the card's right after the sale, kept with the answer: a retry
    # after the card earned more answers exactly the same.
    assert c.sale("station-7", pan, 16_00, [litres_of_diesel(10_000)]).loyalty.points_balance > 450
    assert pump.CompletePreAuthorization(completion).authorization == done


def test_a_birthday_week_sale_gets_the_birthday_bonus_once(coalition):
    c = coalition
    c.program(rules=[loyalty_pb2.EarnRule(rule_id=1, kind=loyalty_pb2.EARN_RULE_KIND_PER_AMOUNT,
                                          points=1, per=100)],
              birthday_points=100, birthday_window_days=3)
    pan = c.card(2)
    ok(c.loyalty.SetMember(loyalty_pb2.SetMemberRequest(request_id=new_id(), pan=pan,
                                                        birth_month=5, birth_day=14)))
    c.now[0] = at(2027, 5, 8)             # six days before: outside the window
    assert c.sale("aroma", pan, 10_00).loyalty.points_earned == 10
    c.now[0] = at(2027, 5, 12)
    bonus = c.sale("aroma", pan, 10_00).loyalty
    assert (bonus.points_earned, bonus.birthday_bonus) == (110, True)
    assert bonus.explanation == "+110 points: 1 point per 1.00 at Aroma, birthday +100"
    c.now[0] = at(2027, 5, 16)            # the same birthday, two days after: once is enough
    again = c.sale("aroma", pan, 10_00).loyalty
    assert (again.points_earned, again.birthday_bonus) == (10, False)
    c.now[0] = at(2028, 5, 13)            # next year's birthday week
    assert c.sale("aroma", pan, 10_00).loyalty.points_earned == 110


def test_crossing_50000_of_lifetime_spend_moves_the_discount_from_3_to_5_percent(coalition):
    c = coalition
    c.program(discounts=[loyalty_pb2.DiscountLevel(minimum_spend_minor=0, discount_bp=300),
                         loyalty_pb2.DiscountLevel(minimum_spend_minor=50_000_00, discount_bp=500)])
    pan = c.card(3)
    before = c.loyalty.GetMember(loyalty_pb2.GetMemberRequest(pan=pan))
    assert (before.discount_bp, before.next_discount_bp, before.to_next_discount_minor) == \
        (300, 500, 50_000_00)
    # 51,546.40 less 3 % (1,546.39): 50,000.01 paid; its price, 51,546.40, counts towards
    # lifetime spend (the program's default), past the threshold; still 3 % on it.
    big = c.sale("station-7", pan, 51_546_40)
    assert (big.approved.amount_minor, big.loyalty.discount_bp, big.loyalty.discount.amount_minor) == \
        (50_000_01, 300, 1_546_39)
    assert big.loyalty.discount_reason == "3 % member discount"
    after = c.sale("station-7", pan, 100_00)
    assert (after.loyalty.discount_bp, after.loyalty.discount.amount_minor, after.approved.amount_minor) == \
        (500, 5_00, 95_00)
    assert after.loyalty.discount_reason == \
        "5 % discount: lifetime spend 51546.40 EUR has reached 50000.00 EUR"


def test_a_return_after_the_points_were_spent_owes_points_and_blocks_redemption(coalition):
    c = coalition
    c.program(rules=[loyalty_pb2.EarnRule(rule_id=1, kind=loyalty_pb2.EARN_RULE_KIND_PER_AMOUNT,
                                          points=1, per=100)])
    pan = c.card(4)
    sale_id = new_id()
    assert c.sale("aroma", pan, 200_00, request_id=sale_id).loyalty.points_earned == 200
    assert c.redeem("aroma", pan, 180).result_code == R.RESULT_CODE_APPROVED
    # A quarter comes back: 50 points, of the 20 left; 30 are owed.
    returned = c.auth["aroma"].Refund(authorization_pb2.RefundRequest(
        request_id=new_id(), pan=pan, amount=eur(50_00), original_request_id=sale_id)).authorization
    assert returned.result_code == R.RESULT_CODE_APPROVED
    assert (returned.loyalty.points_earned, returned.loyalty.points_balance) == (-50, -30)
    assert c.balance(pan) == -30
    assert c.redeem("aroma", pan, 1).result_code == R.RESULT_CODE_DECLINED_POINTS_OWED
    assert c.statement(pan)[0] == "-50 points: goods returned, the points they earned taken back"
    # New points pay the debt first.
    assert c.sale("aroma", pan, 40_00).loyalty.points_balance == 10
    assert c.redeem("aroma", pan, 10).result_code == R.RESULT_CODE_APPROVED


def test_a_coalition_of_a_fuel_network_and_a_cafe_settles_to_zero(coalition):
    c = coalition
    c.program(rules=[loyalty_pb2.EarnRule(rule_id=1, kind=loyalty_pb2.EARN_RULE_KIND_PER_AMOUNT,
                                          points=1, per=100)],
              point_value_millis=1000)            # a point is worth 0.01 EUR
    driver, coffee_lover = c.card(5), c.card(6)
    start = c.now[0]
    assert c.sale("station-12", driver, 500_00).loyalty.points_earned == 500
    assert c.sale("aroma", coffee_lover, 80_00).loyalty.points_earned == 80
    c.now[0] += 3600
    assert c.redeem("aroma", driver, 300).result_code == R.RESULT_CODE_APPROVED
    assert c.redeem("station-7", coffee_lover, 50).result_code == R.RESULT_CODE_APPROVED
    assert c.redeem("station-12", driver, 100).result_code == R.RESULT_CODE_APPROVED   # at home
    # A held redemption at the cafe, confirmed for 20 of the 30 held.
    held = c.points["aroma"].ReservePoints(loyalty_pb2.ReservePointsRequest(
        request_id=new_id(), pan=driver, points=30)).hold_id
    assert c.points["aroma"].ConfirmPoints(loyalty_pb2.ConfirmPointsRequest(
        request_id=new_id(), pan=driver, hold_id=held, points=20)).authorization.result_code == \
        R.RESULT_CODE_APPROVED
    report = c.loyalty.GetSettlement(loyalty_pb2.GetSettlementRequest(
        program_id=1, from_s=start, until_s=c.now[0] + 1))
    rows = {p.partner_id: (p.points_issued, p.points_redeemed, p.pays_minor, p.receives_minor,
                           p.net_minor) for p in report.partners}
    assert rows == {FUEL_NETWORK: (500, 150, 3_20, 50, -2_70),
                    CAFE: (80, 320, 50, 3_20, 2_70)}
    assert sum(p.net_minor for p in report.partners) == 0
    assert [(t.from_partner_id, t.to_partner_id, t.points, t.amount_minor) for t in report.transfers] == \
        [(FUEL_NETWORK, CAFE, 270, 2_70)]
    assert report.currency == "EUR"
    assert [p.partner_name for p in report.partners] == ["Fuelco", "Cafe Aroma"]
    # A period before any of it settles nothing.
    empty = c.loyalty.GetSettlement(loyalty_pb2.GetSettlementRequest(
        program_id=1, from_s=start - 86400, until_s=start))
    assert list(empty.partners) == [] and list(empty.transfers) == []


def test_a_gift_card_loaded_at_the_station_and_spent_at_the_cafe_settles_money_to_zero(coalition):
    """Money and points in one settlement: the station that sells a gift card holds its
    money, so the cafe where it is spent is paid by the station, less what the cafe gives
    back; a card loaded at no partner's outlet settles nothing."""
    c = coalition
    c.program(rules=[loyalty_pb2.EarnRule(rule_id=1, kind=loyalty_pb2.EARN_RULE_KIND_PER_AMOUNT,
                                          points=1, per=100)], point_value_millis=1000)
    gift, topped_up, unattached = c.card(7), c.card(8), c.card(9, funds=20_00)
    start = c.now[0]

    def pay(where, pan, amount_minor):
        request_id = new_id()
        answer = c.auth[where].Purchase(authorization_pb2.PurchaseRequest(
            request_id=request_id, pan=pan, amount=eur(amount_minor))).authorization
        assert answer.result_code == R.RESULT_CODE_APPROVED, answer
        return request_id

    def load_at(where, pan, amount_minor):
        return ok(c.auth[where].LoadValue(authorization_pb2.LoadValueRequest(
            request_id=new_id(), pan=pan, amount=eur(amount_minor))).authorization)

    load_at("station-12", gift, 100_00)          # sold at the station: Fuelco issues it
    cake = pay("aroma", gift, 30_00)             # spent at the cafe: Fuelco owes Aroma 30.00
    pay("station-7", gift, 10_00)                # at home: nothing to settle
    ok(c.auth["aroma"].Refund(authorization_pb2.RefundRequest(
        request_id=new_id(), pan=gift, amount=eur(5_00), original_request_id=cake)).authorization)
    load_at("aroma", topped_up, 40_00)           # issued at the cafe,
    load_at("station-12", topped_up, 10_00)      # topped up at the station: it owes Aroma 10.00
    mistake = pay("station-7", topped_up, 12_00)     # Aroma owes Fuelco 12.00,
    ok(c.auth["station-7"].Reverse(authorization_pb2.ReverseRequest(   # undone
        request_id=new_id(), original_request_id=mistake)).authorization)
    pay("station-7", topped_up, 8_00)            # Aroma owes Fuelco 8.00
    pay("aroma", unattached, 5_00)               # loaded at no partner: nothing
    assert c.sale("aroma", gift, 4_00).result_code == R.RESULT_CODE_APPROVED  # paid in cash
    report = c.loyalty.GetSettlement(loyalty_pb2.GetSettlementRequest(
        program_id=1, from_s=start, until_s=c.now[0] + 1))
    money, = report.money
    assert money.currency == "EUR"
    rows = {p.partner_id: (p.loaded_minor, p.spent_minor, p.pays_minor, p.receives_minor,
                           p.net_minor) for p in money.partners}
    # Fuelco pays 30.00 for the cake, 10.00 for the top-up it took in and 12.00 for the
    # sale it undid; Aroma pays 5.00 for the refund, 12.00 and 8.00 for fuel bought with
    # value it issued.
    assert rows == {FUEL_NETWORK: (110_00, 18_00, 52_00, 25_00, -27_00),
                    CAFE: (40_00, 30_00, 25_00, 52_00, 27_00)}
    assert [(t.from_partner_id, t.to_partner_id, t.amount_minor) for t in money.transfers] == \
        [(FUEL_NETWORK, CAFE, 27_00)]
    assert [p.partner_name for p in money.partners] == ["Fuelco", "Cafe Aroma"]
    # points settle beside the money, each to zero
    assert sum(p.net_minor for p in report.partners) == 0
    assert sum(p.net_minor for p in money.partners) == 0


def test_bad_rules_tiers_and_redemptions_are_refused_and_change_nothing(coalition):
    c = coalition
    c.program(rules=[loyalty_pb2.EarnRule(rule_id=1, kind=loyalty_pb2.EARN_RULE_KIND_PER_AMOUNT,
                                          points=1, per=100)])
    store = c.gw.gateway.store

    def rules(*rules, program_id=1):
        return lambda: c.loyalty.SetEarnRules(loyalty_pb2.SetEarnRulesRequest(
            request_id=new_id(), program_id=program_id, rules=rules))

    per_litre = dict(rule_id=1, kind=loyalty_pb2.EARN_RULE_KIND_PER_VOLUME, points=2, per=1000)
    declined_changing_nothing_but_its_record(store, rules(loyalty_pb2.EarnRule(
        outlets=[fleet_pb2.OutletRef(merchant_id="fuelco", outlet_id="station-99")], **per_litre)),
        R.RESULT_CODE_DECLINED_UNKNOWN_OUTLET)
    declined_changing_nothing_but_its_record(store, rules(loyalty_pb2.EarnRule(**per_litre), program_id=9),
                                             R.RESULT_CODE_DECLINED_UNKNOWN_PROGRAM)
    declined_changing_nothing_but_its_record(store, rules(loyalty_pb2.EarnRule(partner_id=7, **per_litre)),
                                             R.RESULT_CODE_DECLINED_UNKNOWN_PARTNER)
    declined_changing_nothing_but_its_record(store, lambda: c.gw.fleet.DefineOutlet(fleet_pb2.DefineOutletRequest(
        request_id=new_id(), merchant_id="fuelco", outlet_id="station-8", partner_id=7)),
        R.RESULT_CODE_DECLINED_UNKNOWN_PARTNER)
    invalid_changing_nothing(store, lambda: c.loyalty.DefinePartner(loyalty_pb2.DefinePartnerRequest(
        request_id=new_id(), partner_id=7, name="")), "name")
    invalid_changing_nothing(store, rules(loyalty_pb2.EarnRule(product_codes=[42], **per_litre)),
                             "product_code")
    invalid_changing_nothing(store, rules(loyalty_pb2.EarnRule(**{**per_litre, "per": 0})),
                             "rules[0].per")
    invalid_changing_nothing(store, rules(loyalty_pb2.EarnRule(partner_id=CAFE, outlets=[
        fleet_pb2.OutletRef(merchant_id="fuelco", outlet_id="station-7")], **per_litre)), "rules[0]")
    invalid_changing_nothing(store, rules(loyalty_pb2.EarnRule(**per_litre),
                                          loyalty_pb2.EarnRule(**per_litre)), "rule_id")
    invalid_changing_nothing(store, rules(loyalty_pb2.EarnRule(**per_litre, days=[8])),
                             "rules[0].days[0]")

    def program(**fields):
        return lambda: c.loyalty.SetProgram(loyalty_pb2.SetProgramRequest(
            request_id=new_id(), program_id=1, expiry_kind=loyalty_pb2.POINTS_EXPIRY_KIND_NEVER,
            range_ids=[1], **fields))

    silver = loyalty_pb2.Tier(name="Silver", minimum=1_000_00, multiplier_permille=1200)
    invalid_changing_nothing(store, program(tiers=[silver, loyalty_pb2.Tier(
        name="Gold", minimum=1_000_00, multiplier_permille=1500)]), "tiers[1].minimum")
    invalid_changing_nothing(store, program(tiers=[silver, loyalty_pb2.Tier(
        name="Gold", minimum=500_00, multiplier_permille=1500)]), "tiers[1].minimum")
    invalid_changing_nothing(store, program(tiers=[loyalty_pb2.Tier(
        name="Gold", minimum=1, multiplier_permille=999)]), "tiers[0].multiplier_permille")
    invalid_changing_nothing(store, program(discounts=[
        loyalty_pb2.DiscountLevel(minimum_spend_minor=0, discount_bp=500),
        loyalty_pb2.DiscountLevel(minimum_spend_minor=100_00, discount_bp=300)]), "discounts[1]")

    pan = c.card(7)
    invalid_changing_nothing(store, lambda: c.points["aroma"].RecordSale(loyalty_pb2.RecordSaleRequest(
        request_id=new_id(), pan=pan, amount=eur(10_00),
        payment_method=common_pb2.PAYMENT_METHOD_CARD_VALUE)), "payment_method", secret=pan)
    invalid_changing_nothing(store, lambda: c.loyalty.SetMember(loyalty_pb2.SetMemberRequest(
        request_id=new_id(), pan=pan, birth_month=2, birth_day=30)), "birth_day", secret=pan)
    sale_id = new_id()
    assert c.sale("aroma", pan, 30_00, request_id=sale_id).loyalty.points_earned == 30
    declined_changing_nothing_but_its_record(store, lambda: c.redeem("aroma", pan, 31),
                                             R.RESULT_CODE_DECLINED_INSUFFICIENT_POINTS)
    declined_changing_nothing_but_its_record(store, lambda: c.auth["aroma"].Refund(
        authorization_pb2.RefundRequest(request_id=new_id(), pan=pan, amount=eur(30_01),
                                        original_request_id=sale_id)).authorization,
        R.RESULT_CODE_DECLINED_REFUND_EXCEEDS_ORIGINAL)
    invalid_changing_nothing(store, lambda: c.loyalty.GetSettlement(loyalty_pb2.GetSettlementRequest(
        program_id=1, from_s=100, until_s=100)), "until_s")


def test_program_analytics_of_a_month_against_the_month_before(coalition):
    c = coalition
    c.program(rules=[loyalty_pb2.EarnRule(rule_id=1, kind=loyalty_pb2.EARN_RULE_KIND_PER_AMOUNT,
                                          points=1, per=100)])
    a, b, d = c.card(10, funds=1_000_00), c.card(11), c.card(12)
    june, july = at(2027, 6, 1, 0), at(2027, 7, 1, 0)
    c.now[0] = at(2027, 6, 10)
    c.sale("aroma", a, 10_00)
    c.sale("aroma", b, 20_00)
    c.now[0] = at(2027, 7, 3)
    c.auth["station-7"].Purchase(authorization_pb2.PurchaseRequest(
        request_id=new_id(), pan=a, amount=eur(60_00)))              # paid with the card
    sale_id = new_id()
    c.sale("aroma", a, 30_00, request_id=sale_id)
    c.sale("station-12", d, 90_00)
    c.auth["aroma"].Refund(authorization_pb2.RefundRequest(
        request_id=new_id(), pan=a, amount=eur(10_00), original_request_id=sale_id))
    assert c.redeem("aroma", d, 40).result_code == R.RESULT_CODE_APPROVED
    # July's first 30 days, against June's 30.
    figures = c.loyalty.GetProgramAnalytics(loyalty_pb2.GetProgramAnalyticsRequest(
        program_id=1, from_s=july, until_s=july + (july - june)))
    assert (figures.active_cards, figures.transactions, figures.sales_minor, figures.returns_minor) == \
        (2, 3, 180_00, 10_00)
    assert (figures.average_check_minor, figures.purchases_per_card_x100) == (60_00, 150)
    assert (figures.previous_active_cards, figures.retained_cards, figures.retention_bp) == (2, 1, 5000)
    assert (figures.points_earned, figures.points_redeemed, figures.points_returned) == (180, 40, 10)
    assert (figures.points_expired, figures.breakage_bp, figures.currency) == (0, 0, "EUR")


@pytest.mark.parametrize("no_earn", [False, True])
def test_points_pay_part_of_a_sale_and_the_rest_earns_unless_the_program_says_not(coalition, no_earn):
    c = coalition
    c.program(rules=[loyalty_pb2.EarnRule(rule_id=1, kind=loyalty_pb2.EARN_RULE_KIND_PER_AMOUNT,
                                          points=1, per=100)],
              point_value_millis=1000, no_earn_when_redeeming=no_earn)
    pan = c.card(20)
    assert c.sale("aroma", pan, 500_00).loyalty.points_earned == 500
    mixed = c.points["aroma"].RecordSale(loyalty_pb2.RecordSaleRequest(
        request_id=new_id(), pan=pan, amount=eur(20_00), payment_method=CASH, points=300)).authorization
    assert mixed.approved.amount_minor == 17_00                     # still to pay in cash
    outcome = mixed.loyalty
    assert (outcome.points_redeemed, outcome.points_value.amount_minor) == (300, 3_00)
    assert outcome.points_earned == (0 if no_earn else 17)
    assert outcome.points_balance == 500 - 300 + outcome.points_earned
    # Offering more points than the sale needs takes only what it needs.
    all_in = c.points["aroma"].RecordSale(loyalty_pb2.RecordSaleRequest(
        request_id=new_id(), pan=pan, amount=eur(1_00), payment_method=CASH, points=10_000)).authorization
    assert (all_in.approved.amount_minor, all_in.loyalty.points_redeemed) == (0, 100)
    assert "-100 points: redeemed at Aroma" in c.statement(pan)


def test_a_held_redemption_is_confirmed_for_less_released_or_released_by_its_timeout(coalition):
    c = coalition
    c.program(rules=[loyalty_pb2.EarnRule(rule_id=1, kind=loyalty_pb2.EARN_RULE_KIND_PER_AMOUNT,
                                          points=1, per=100)])
    pan = c.card(21)
    assert c.sale("station-7", pan, 500_00).loyalty.points_balance == 500
    till = c.points["aroma"]

    def reserve(points):
        answer = till.ReservePoints(loyalty_pb2.ReservePointsRequest(request_id=new_id(), pan=pan,
                                                                     points=points))
        assert answer.authorization.result_code == R.RESULT_CODE_APPROVED, answer
        return answer.hold_id

    basket = reserve(300)
    assert c.balance(pan) == 200                    # held points cannot be spent twice
    assert c.redeem("aroma", pan, 201).result_code == R.RESULT_CODE_DECLINED_INSUFFICIENT_POINTS
    confirmed = till.ConfirmPoints(loyalty_pb2.ConfirmPointsRequest(
        request_id=new_id(), pan=pan, hold_id=basket, points=250)).authorization
    assert (confirmed.result_code, confirmed.approved.amount_minor) == (R.RESULT_CODE_APPROVED, 250)
    assert c.balance(pan) == 250                    # the 50 not needed came back
    again = till.ReleasePoints(loyalty_pb2.ReleasePointsRequest(request_id=new_id(), pan=pan,
                                                                hold_id=basket)).authorization
    assert again.result_code == R.RESULT_CODE_DECLINED_HOLD_ALREADY_COMPLETED

    cancelled = reserve(100)
    assert till.ReleasePoints(loyalty_pb2.ReleasePointsRequest(
        request_id=new_id(), pan=pan, hold_id=cancelled)).authorization.result_code == R.RESULT_CODE_APPROVED
    assert c.balance(pan) == 250

    forgotten = reserve(40)
    # Held points are not points about to expire: no warning for them.
    assert list(c.loyalty.ListExpiringPoints(loyalty_pb2.ListExpiringPointsRequest(within_days=1))) == []
    c.now[0] += 1801                                # past the hold timeout: the writer releases it
    deadline = time.monotonic() + 10
    while c.balance(pan) != 250 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert c.balance(pan) == 250
    late = till.ConfirmPoints(loyalty_pb2.ConfirmPointsRequest(
        request_id=new_id(), pan=pan, hold_id=forgotten, points=40)).authorization
    assert late.result_code == R.RESULT_CODE_DECLINED_HOLD_EXPIRED
    assert c.statement(pan)[:3] == [
        "+40 points: a held redemption was not confirmed in time; released",
        "-40 points: held for a redemption at Aroma",
        "+100 points: a held redemption was released"]


def test_a_lost_card_is_replaced_with_its_balance_lots_and_tier_and_is_declined_everywhere(coalition):
    from cardgate.v1 import issuing_pb2

    c = coalition
    c.program(rules=[loyalty_pb2.EarnRule(rule_id=1, kind=loyalty_pb2.EARN_RULE_KIND_PER_AMOUNT,
                                          points=1, per=100)],
              tiers=[loyalty_pb2.Tier(name="Gold", minimum=100_00, multiplier_permille=1500)],
              expiry_kind=loyalty_pb2.POINTS_EXPIRY_KIND_MONTH_END_AFTER, expiry_n=6)
    lost, spare = c.card(30, funds=300_00), c.card(31)
    assert c.auth["aroma"].Purchase(authorization_pb2.PurchaseRequest(
        request_id=new_id(), pan=lost, amount=eur(120_00))).authorization.loyalty.tier == "Gold"
    c.now[0] += 40 * 86400                          # a second lot, expiring a month later
    c.sale("aroma", lost, 10_00)
    before = c.loyalty.GetPoints(loyalty_pb2.GetPointsRequest(pan=lost))
    replaced = c.gw.issuing.ReplaceCard(issuing_pb2.ReplaceCardRequest(
        request_id=new_id(), pan=lost, new_pan=spare)).authorization
    assert (replaced.result_code, replaced.approved.amount_minor) == (R.RESULT_CODE_APPROVED, 180_00)
    after = c.loyalty.GetPoints(loyalty_pb2.GetPointsRequest(pan=spare))
    assert (after.points, list(after.expiring)) == (before.points, list(before.expiring)) and after.points == 135
    assert c.loyalty.GetMember(loyalty_pb2.GetMemberRequest(pan=spare)).tier == "Gold"
    assert c.auth["aroma"].GetBalance(authorization_pb2.GetBalanceRequest(pan=spare)).balance.balance_minor == 180_00
    # The old card, everywhere:
    closed = R.RESULT_CODE_DECLINED_CARD_CLOSED
    assert c.auth["aroma"].Purchase(authorization_pb2.PurchaseRequest(
        request_id=new_id(), pan=lost, amount=eur(1_00))).authorization.result_code == closed
    assert c.auth["aroma"].LoadValue(authorization_pb2.LoadValueRequest(
        request_id=new_id(), pan=lost, amount=eur(1_00))).authorization.result_code == closed
    assert c.sale("aroma", lost, 1_00).result_code == closed
    assert c.redeem("aroma", lost, 1).result_code == closed
    assert c.auth["aroma"].PreAuthorize(authorization_pb2.PreAuthorizeRequest(
        request_id=new_id(), pan=lost, amount=eur(1_00))).authorization.result_code == closed
    assert c.gw.issuing.ReplaceCard(issuing_pb2.ReplaceCardRequest(
        request_id=new_id(), pan=lost, new_pan=c.card(32))).authorization.result_code == closed
    # The new card works, tier multiplier included.
    assert c.sale("aroma", spare, 10_00).loyalty.points_earned == 15
