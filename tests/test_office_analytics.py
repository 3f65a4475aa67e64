"""Sales analytics, told over real gRPC with mutual TLS: a coalition program in Warsaw
time and a plain gift range beside it; sales late in the UTC evening count on the next
local day; by partner, outlet and product with litres; a refund and a sale paid in cash;
the CSV and the chart a person reads."""
import csv
import datetime

import pytest

from cardgate.gateway.office.analytics_files import write_chart, write_csv
from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2, fleet_pb2,
                         loyalty_pb2, loyalty_pb2_grpc, office_pb2, office_pb2_grpc)

from conftest import LiveGateway
from helpers import create_range, eur, ink_of, issue, load, make_pan, new_id

R = common_pb2
DIESEL, CAKE = 19, 42
NOV_2 = int(datetime.datetime(2026, 11, 2, tzinfo=datetime.timezone.utc).timestamp())
HOUR = 3600


def ok(answer):
    assert answer.result_code == R.RESULT_CODE_APPROVED, answer
    return answer


@pytest.fixture
def world(tmp_path):
    now = [NOV_2 + 8 * HOUR]
    gw = LiveGateway(tmp_path / "data", clock=lambda: now[0])
    gw.now = now
    operator = gw.open("operator-1")
    gw.loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(operator)
    gw.office = office_pb2_grpc.OfficeServiceStub(operator)
    create_range(gw)                                                   # range 1: the program's
    create_range(gw, range_id=2, prefix="627701")                      # range 2: plain gift cards
    for code, kind, name in ((DIESEL, fleet_pb2.PRODUCT_KIND_FUEL, "Diesel"),
                             (CAKE, fleet_pb2.PRODUCT_KIND_OTHER, "Cake")):
        ok(gw.fleet.DefineProduct(fleet_pb2.DefineProductRequest(
            request_id=new_id(), product_code=code, kind=kind, name=name)))
    gw.auth_at = {}
    for partner, name, merchant, outlet in ((1, "Fuelco", "fuelco", "s12"), (2, "Cafe", "cafe", "c1")):
        ok(gw.loyalty.DefinePartner(loyalty_pb2.DefinePartnerRequest(
            request_id=new_id(), partner_id=partner, name=name)))
        ok(gw.fleet.DefineOutlet(fleet_pb2.DefineOutletRequest(
            request_id=new_id(), merchant_id=merchant, outlet_id=outlet, partner_id=partner)))
        gw.gateway.pki.issue("terminal", outlet, gw.certs, merchant_id=merchant, outlet_id=outlet)
        gw.auth_at[outlet] = authorization_pb2_grpc.AuthorizationServiceStub(gw.open(outlet))
    gw.points_at = loyalty_pb2_grpc.LoyaltyServiceStub(gw.open("c1"))
    ok(gw.loyalty.SetProgram(loyalty_pb2.SetProgramRequest(
        request_id=new_id(), program_id=1, range_ids=[1], time_zone="Europe/Warsaw",
        expiry_kind=loyalty_pb2.POINTS_EXPIRY_KIND_NEVER)))
    ok(gw.loyalty.SetEarnRules(loyalty_pb2.SetEarnRulesRequest(
        request_id=new_id(), program_id=1, rules=[loyalty_pb2.EarnRule(
            rule_id=1, kind=loyalty_pb2.EARN_RULE_KIND_PER_AMOUNT, points=1, per=100)])))
    yield gw
    gw.close()


def pay(gw, outlet, pan, lines, request_id=None):
    return ok(gw.auth_at[outlet].Purchase(authorization_pb2.PurchaseRequest(
        request_id=request_id or new_id(), pan=pan, lines=lines)).authorization)


def test_sales_by_local_day_partner_outlet_and_product_for_a_program_and_a_plain_range(world, tmp_path):
    gw = world
    member, other, gift = make_pan(1), make_pan(2), make_pan(1, "627701")
    issue(gw, [member, other])
    issue(gw, [gift], range_id=2)
    for pan in (member, other, gift):
        assert load(gw, pan, 500_00).result_code == R.RESULT_CODE_APPROVED
    fuel = [R.ProductLine(product_code=DIESEL, volume_ml=30_000, unit_price_minor=1_50)]
    cake = [R.ProductLine(product_code=CAKE, amount_minor=6_00)]
    pay(gw, "s12", member, fuel)                                     # 2 Nov, 09:00 Warsaw
    refunded = new_id()
    pay(gw, "c1", other, cake, request_id=refunded)
    ok(gw.auth_at["c1"].Refund(authorization_pb2.RefundRequest(
        request_id=new_id(), pan=other, amount=eur(2_00), original_request_id=refunded)).authorization)
    gw.now[0] = NOV_2 + 23 * HOUR + 30 * 60                          # 00:30 on 3 Nov in Warsaw
    pay(gw, "s12", other, fuel)
    ok(gw.points_at.RecordSale(loyalty_pb2.RecordSaleRequest(        # paid in cash at the cafe
        request_id=new_id(), pan=member, amount=eur(6_00), lines=cake,
        payment_method=R.PAYMENT_METHOD_CASH)).authorization)
    pay(gw, "c1", gift, cake)                                        # the plain range's
    period = dict(from_s=NOV_2, until_s=NOV_2 + 3 * 86400)
    program = gw.office.GetSalesAnalytics(office_pb2.GetSalesAnalyticsRequest(program_id=1, **period))
    assert program.time_zone == "Europe/Warsaw" and program.currency == "EUR"
    days = {d.key: (d.transactions, d.sales_minor, d.returns_minor, d.active_cards, d.volume_ml)
            for d in program.days}
    # 2 Nov UTC 00:00 is 01:00 in Warsaw; the last day reaches 5 Nov 01:00 there
    assert list(days) == ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]
    assert days["2026-11-02"] == (2, 45_00 + 6_00, 2_00, 2, 30_000)
    assert days["2026-11-03"] == (2, 45_00 + 6_00, 0, 2, 30_000)
    assert days["2026-11-04"][0] == 0
    by_partner = {p.key: (p.name, p.transactions, p.sales_minor, p.volume_ml) for p in program.by_partner}
    assert by_partner == {"1": ("Fuelco", 2, 90_00, 60_000), "2": ("Cafe", 2, 12_00, 0)}
    assert {o.key: o.transactions for o in program.by_outlet} == {"fuelco/s12": 2, "cafe/c1": 2}
    products = {p.key: (p.name, p.sales_minor, p.volume_ml) for p in program.by_product}
    assert products == {str(DIESEL): ("Diesel", 90_00, 60_000), str(CAKE): ("Cake", 12_00, 0)}
    t = program.total
    assert (t.transactions, t.sales_minor, t.returns_minor, t.active_cards, t.volume_ml) == \
        (4, 102_00, 2_00, 2, 60_000)
    assert t.points_earned == sum(d.points_earned for d in program.days) > 0
    plain = gw.office.GetSalesAnalytics(office_pb2.GetSalesAnalyticsRequest(range_id=2, **period))
    assert plain.time_zone == "UTC" and (plain.total.transactions, plain.total.sales_minor) == (1, 6_00)
    assert [d.key for d in plain.days][0] == "2026-11-02"

    write_csv(program, tmp_path / "sales.csv")
    rows = list(csv.DictReader((tmp_path / "sales.csv").open()))
    assert [r["key"] for r in rows if r["section"] == "day"][:2] == ["2026-11-02", "2026-11-03"]
    assert next(r for r in rows if r["section"] == "total")["sales"] == "102.00"
    write_chart(program, tmp_path / "sales.png", "Sales of program 1")
    png = (tmp_path / "sales.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and ink_of(png) > 0.01
