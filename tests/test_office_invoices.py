"""A fleet contract's invoice, told over real gRPC with mutual TLS: a month of its two
trucks' fuel and shop sales (on post-paid credit: nothing loaded first), a refund, a sale
reversed within the month and one of October reversed in November; the invoice's totals
equal its transactions, by card, vehicle, driver and product; its PDF reads back
(pdftotext) and renders (pdftoppm)."""
import csv
import datetime
import subprocess

import grpc
import pytest

from cardgate.gateway.office.invoice_files import write_csv, write_pdf
from cardgate.v1 import authorization_pb2, common_pb2, fleet_pb2, office_pb2, office_pb2_grpc

from conftest import LiveGateway
from helpers import Clock, create_range, eur, ink_of, issue, make_pan, new_id

R = common_pb2
DIESEL, SHOP = 19, 200
NOV = int(datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc).timestamp())
DEC = int(datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc).timestamp())
DAY = 86400


@pytest.fixture
def gw(tmp_path):
    clock = Clock(NOV - 3 * DAY)
    gw = LiveGateway(tmp_path / "data", clock=clock)
    gw.clock = clock
    gw.office = office_pb2_grpc.OfficeServiceStub(gw.open("operator-1"))
    yield gw
    gw.close()


def ok(answer):
    assert answer.result_code == R.RESULT_CODE_APPROVED, answer
    return answer


def fuel(gw, pan, litres_ml, vehicle, driver, shop_minor=0, request_id=None):
    lines = [R.ProductLine(product_code=DIESEL, volume_ml=litres_ml, unit_price_minor=6_50)]
    if shop_minor:
        lines.append(R.ProductLine(product_code=SHOP, amount_minor=shop_minor))
    return gw.auth.Purchase(authorization_pb2.PurchaseRequest(
        request_id=request_id or new_id(), pan=pan, lines=lines,
        fleet=R.FleetData(vehicle_id=vehicle, driver_id=driver))).authorization


def contract_fleet(gw):
    create_range(gw, time_zone="Europe/Warsaw")
    for code, kind, name in ((DIESEL, fleet_pb2.PRODUCT_KIND_FUEL, "Diesel"),
                             (SHOP, fleet_pb2.PRODUCT_KIND_OTHER, "Shop")):
        ok(gw.fleet.DefineProduct(fleet_pb2.DefineProductRequest(
            request_id=new_id(), product_code=code, kind=kind, name=name)))
    for contract in (7, 8):
        ok(gw.fleet.SetContract(fleet_pb2.SetContractRequest(
            request_id=new_id(), contract_id=contract, currency="EUR", credit_limit_minor=50_000_00)))
    trucks = [make_pan(serial) for serial in (11, 12, 13)]
    issue(gw, trucks)
    for pan, contract in zip(trucks, (7, 7, 8)):
        ok(gw.fleet.AssignCard(fleet_pb2.AssignCardRequest(
            request_id=new_id(), pan=pan, contract_id=contract)))
    return trucks


def test_a_post_paid_contract_card_pays_at_once_without_a_load(gw):
    trucks = contract_fleet(gw)
    paid = ok(fuel(gw, trucks[0], 10_000, "KR 1", "anna"))
    assert paid.approved.amount_minor == 65_00
    assert paid.balance.balance_minor == -65_00 and paid.balance.credit_limit_minor == 50_000_00


def test_the_contracts_invoice_equals_its_transactions_by_card_vehicle_driver_product(gw, tmp_path):
    trucks = contract_fleet(gw)
    october_id = new_id()
    ok(fuel(gw, trucks[0], 20_000, "KR 1", "anna", request_id=october_id))    # October
    expected = {"charged": 0, "litres": 0, "refunded": 0}
    for day in range(0, 30, 3):
        gw.clock.now_s = NOV + day * DAY + 7 * 3600
        truck, vehicle, driver = (trucks[0], "KR 1", "anna") if day % 2 else (trucks[1], "KR 2", "piotr")
        shop = 4_50 if day % 9 == 0 else 0
        answer = ok(fuel(gw, truck, 30_000 + day * 100, vehicle, driver, shop))
        expected["charged"] += answer.approved.amount_minor
        expected["litres"] += 30_000 + day * 100
        ok(fuel(gw, trucks[2], 5_000, "OTHER", "other"))                    # another contract
    gw.clock.now_s = NOV + 10 * DAY
    refunded_sale = new_id()
    sale = ok(fuel(gw, trucks[0], 1_000, "KR 1", "anna", request_id=refunded_sale))
    ok(gw.auth.Refund(authorization_pb2.RefundRequest(
        request_id=new_id(), pan=trucks[0], amount=eur(2_00), original_request_id=refunded_sale)).authorization)
    expected["charged"] += sale.approved.amount_minor
    expected["litres"] += 1_000
    expected["refunded"] += 2_00
    mistaken = new_id()
    ok(fuel(gw, trucks[1], 9_000, "KR 2", "piotr", request_id=mistaken))       # reversed below
    ok(gw.auth.Reverse(authorization_pb2.ReverseRequest(request_id=new_id(), original_request_id=mistaken)).authorization)
    ok(gw.auth.Reverse(authorization_pb2.ReverseRequest(request_id=new_id(), original_request_id=october_id)).authorization)
    expected["refunded"] += 130_00          # October's 20 L at 6.50, given back in November
    gw.clock.now_s = DEC + DAY
    ok(fuel(gw, trucks[0], 1_000, "KR 1", "anna"))                            # December

    invoice = gw.office.GetFleetInvoice(office_pb2.GetFleetInvoiceRequest(
        contract_id=7, from_s=NOV, until_s=DEC))
    assert (invoice.charged_minor, invoice.refunded_minor, invoice.volume_ml) == \
        (expected["charged"], expected["refunded"], expected["litres"])
    assert invoice.total_minor == expected["charged"] - expected["refunded"]
    assert invoice.currency == "EUR" and invoice.local_from == "2026-11-01T01:00:00+01:00"
    # every way of cutting it adds up to the same charge and litres
    charged_by_card = sum(t.amount_minor for t in invoice.by_card)
    assert charged_by_card == invoice.total_minor
    for cut in (invoice.by_vehicle, invoice.by_driver):
        assert sum(t.amount_minor for t in cut) == invoice.charged_minor
        assert sum(t.volume_ml for t in cut) == invoice.volume_ml
    assert {t.key for t in invoice.by_vehicle} == {"KR 1", "KR 2"}
    assert {t.key for t in invoice.by_card} == {p[:6] + "******" + p[-4:] for p in trucks[:2]}
    products = {t.key: t for t in invoice.by_product}
    assert set(products) == {str(DIESEL), str(SHOP)} and products[str(DIESEL)].name == "Diesel"
    assert products[str(DIESEL)].volume_ml == invoice.volume_ml
    assert sum(t.amount_minor for t in invoice.by_product) == invoice.charged_minor   # no discount
    # the invoice's lines are its transactions: each sale once, none of the other contract's
    listed = [line for batch in gw.office.ListTransactions(office_pb2.ListTransactionsRequest(
        from_s=NOV, until_s=DEC, contract_id=7, result=1)) for line in batch.lines]
    sales = [x for x in listed if x.operation == "PURCHASE" and x.request_id != mistaken]
    assert sum(x.approved.amount_minor for x in sales) == invoice.charged_minor
    assert [x.request_id for x in invoice.lines if x.operation == "PURCHASE"] == [x.request_id for x in sales]
    assert all(x.vehicle_id != "OTHER" for x in invoice.lines)

    write_csv(invoice, tmp_path / "invoice.csv")
    rows = list(csv.DictReader((tmp_path / "invoice.csv").open()))
    summary = {r["key"]: r["amount"] for r in rows if r["section"] == "summary"}
    total = invoice.total_minor
    assert summary["total"] == f"{total // 100}.{total % 100:02d}"
    write_pdf(invoice, tmp_path / "invoice.pdf")
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "invoice.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "Fleet invoice, contract 7" in text and summary["total"] in text
    assert "KR 1" in text and "piotr" in text and "Diesel" in text
    assert "-130.00" in text                     # October's sale, given back
    assert trucks[0] not in text
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1",
                    str(tmp_path / "invoice.pdf"), str(tmp_path / "page")], check=True)
    page = next(tmp_path.glob("page*.png")).read_bytes()
    assert page[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(page[16:20], "big"), int.from_bytes(page[20:24], "big")
    assert abs(width - 496) <= 1 and abs(height - 702) <= 1      # A4 at 60 dpi
    assert ink_of(page) > 0.01                   # printed on, not a blank page


def test_an_invoice_of_an_unknown_period_or_contract_is_refused(gw):
    for request, field in ((dict(contract_id=0, from_s=NOV, until_s=DEC), "contract_id"),
                           (dict(contract_id=7, from_s=DEC, until_s=NOV), "until_s")):
        with pytest.raises(grpc.RpcError) as refused:
            gw.office.GetFleetInvoice(office_pb2.GetFleetInvoiceRequest(**request))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in refused.value.details()
