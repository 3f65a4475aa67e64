"""Transactions as an office sees them, over real gRPC with mutual TLS: a month of mixed
traffic from two outlets, listed by OfficeService.ListTransactions and summed back to the
journal; filters, pages, local time, fleet details; nothing listed twice for a retry."""
import datetime
import uuid

import grpc
import pytest

from cardgate.fastcore import records
from cardgate.fastcore.records import Op
from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2, fleet_pb2,
                         office_pb2, office_pb2_grpc)

from conftest import LiveGateway
from helpers import Clock, create_range, eur, issue, journal_entries, make_pan, new_id

R = common_pb2
DIESEL, SHOP = 19, 200
MONTH_START = int(datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc).timestamp())
MONTH_END = int(datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc).timestamp())
DAY = 86400


@pytest.fixture
def office(tmp_path):
    clock = Clock(MONTH_START - 2 * DAY)
    gw = LiveGateway(tmp_path / "data", clock=clock)
    gw.clock = clock
    gw.gateway.pki.issue("terminal", "terminal-2", gw.certs, merchant_id="m2", outlet_id="o7")
    gw.auth2 = authorization_pb2_grpc.AuthorizationServiceStub(gw.open("terminal-2"))
    gw.office = office_pb2_grpc.OfficeServiceStub(gw.open("operator-1"))
    yield gw
    gw.close()


def listed(gw, **query):
    return [line for batch in gw.office.ListTransactions(office_pb2.ListTransactionsRequest(**query))
            for line in batch.lines]


def sale(auth, pan, amount_minor, request_id=None, **more):
    return auth.Purchase(authorization_pb2.PurchaseRequest(
        request_id=request_id or new_id(), pan=pan, amount=eur(amount_minor), **more)).authorization


def paid_sale(auth, pan, amount_minor):
    """(request id, authorization) of an approved purchase."""
    request_id = new_id()
    answer = sale(auth, pan, amount_minor, request_id=request_id)
    assert answer.result_code == R.RESULT_CODE_APPROVED, answer
    return request_id, answer


def load(auth, pan, amount_minor):
    return auth.LoadValue(authorization_pb2.LoadValueRequest(
        request_id=new_id(), pan=pan, amount=eur(amount_minor))).authorization


def mixed_month(gw):
    """Traffic before, through and after November 2026 on three cards, from two outlets;
    returns the request ids made within November."""
    create_range(gw, time_zone="Europe/Warsaw")
    for code, kind in ((DIESEL, fleet_pb2.PRODUCT_KIND_FUEL), (SHOP, fleet_pb2.PRODUCT_KIND_OTHER)):
        gw.fleet.DefineProduct(fleet_pb2.DefineProductRequest(
            request_id=new_id(), product_code=code, kind=kind, name=str(code)))
    pans = [make_pan(serial) for serial in (1, 2, 3)]
    issue(gw, pans)
    assert load(gw.auth, pans[0], 500_00).result_code == R.RESULT_CODE_APPROVED   # October
    within = []
    for day in range(30):
        gw.clock.now_s = MONTH_START + day * DAY + 8 * 3600 + day * 60
        auth = gw.auth if day % 2 == 0 else gw.auth2
        pan = pans[day % 3]
        answers = [load(auth, pan, 40_00), sale(auth, pan, 7_25)]
        if day % 5 == 0:
            rid = new_id()
            answers.append(sale(auth, pan, 12_00, request_id=rid, lines=[
                R.ProductLine(product_code=DIESEL, volume_ml=10_000, unit_price_minor=1_00),
                R.ProductLine(product_code=SHOP, amount_minor=2_00)],
                fleet=R.FleetData(driver_id=f"driver-{day}", vehicle_id="WX 1234", odometer_km=1000 + day)))
            answers.append(sale(auth, pan, 12_00, request_id=rid, lines=[    # a retry
                R.ProductLine(product_code=DIESEL, volume_ml=10_000, unit_price_minor=1_00),
                R.ProductLine(product_code=SHOP, amount_minor=2_00)],
                fleet=R.FleetData(driver_id=f"driver-{day}", vehicle_id="WX 1234", odometer_km=1000 + day)))
        if day % 7 == 3:
            answers.append(sale(auth, pan, 9_000_00))                          # declined
            paid_id, paid = paid_sale(auth, pan, 3_00)
            answers.append(paid)
            answers.append(auth.Refund(authorization_pb2.RefundRequest(
                request_id=new_id(), pan=pan, amount=eur(1_00),
                original_request_id=paid_id)).authorization)
        if day == 10:
            hold_id = new_id()
            answers.append(auth.PreAuthorize(authorization_pb2.PreAuthorizeRequest(
                request_id=hold_id, pan=pan, amount=eur(50_00), product_codes=[DIESEL])).authorization)
            answers.append(auth.CompletePreAuthorization(authorization_pb2.CompletePreAuthorizationRequest(
                request_id=new_id(), pan=pan, hold_id=hold_id, lines=[
                    R.ProductLine(product_code=DIESEL, volume_ml=20_500, unit_price_minor=1_50)])
            ).authorization)
            gone_id, gone = paid_sale(auth, pan, 1_00)
            answers.append(gone)
            answers.append(auth.Reverse(authorization_pb2.ReverseRequest(
                request_id=new_id(), original_request_id=gone_id)).authorization)
        within.extend(answers)
    gw.clock.now_s = MONTH_END + DAY                                             # December
    assert load(gw.auth, pans[1], 10_00).result_code == R.RESULT_CODE_APPROVED
    return pans


def journal_by_request(gw):
    found = {}
    for entry in journal_entries(gw.gateway.store):
        found.setdefault(str(uuid.UUID(bytes=entry.request_id)), []).append(entry)
    return found


def test_a_month_of_mixed_traffic_is_listed_once_each_and_sums_back_to_the_journal(office):
    gw = office
    pans = mixed_month(gw)
    lines = listed(gw, from_s=MONTH_START, until_s=MONTH_END, page_size=100_000)
    assert all(MONTH_START <= line.time_s < MONTH_END for line in lines)
    assert [line.time_s for line in lines] == sorted(line.time_s for line in lines)
    # every request once: the retries of the fleet sales are not lines of their own
    ids = [line.request_id for line in lines]
    assert len(ids) == len(set(ids))
    operations = {line.operation for line in lines}
    assert operations == {"LOAD", "PURCHASE", "REFUND", "PREAUTH", "COMPLETE", "REVERSAL"}
    assert sum(line.operation == "PURCHASE" and line.lines != [] for line in lines) == 6
    # summed back to the journal: each line's postings, by the request id both carry
    posted = {rid: entries for rid, entries in journal_by_request(gw).items()
              if MONTH_START <= entries[0].time_s < MONTH_END}
    lines_posting = {line.request_id for line in lines if line.journal_seq}
    assert lines_posting == set(posted)
    for line in lines:
        entries = posted.get(line.request_id, [])
        if line.operation in ("LOAD", "PURCHASE", "REFUND", "PREAUTH"):
            assert sum(e.amount_minor for e in entries) == line.approved.amount_minor, line
        approved = line.result_code in (R.RESULT_CODE_APPROVED, R.RESULT_CODE_PARTIALLY_APPROVED)
        assert bool(line.journal_seq) == approved, line
        assert line.masked_pan in {p[:6] + "******" + p[-4:] for p in pans}
        assert "-" not in line.masked_pan and len(line.masked_pan) == 16
    sales = sum(line.approved.amount_minor for line in lines if line.operation == "PURCHASE")
    journal_sales = sum(e.amount_minor for entries in posted.values() for e in entries
                        if e.op == Op.PURCHASE and e.credit_slot == 2)
    assert sales == journal_sales > 0
    declined = listed(gw, from_s=MONTH_START, until_s=MONTH_END, result=2)
    assert {line.result_code for line in declined} == {R.RESULT_CODE_DECLINED_INSUFFICIENT_FUNDS}
    assert len(declined) == sum(line.journal_seq == 0 for line in lines) > 0


def test_filters_pages_and_local_time(office):
    gw = office
    pans = mixed_month(gw)
    month = dict(from_s=MONTH_START, until_s=MONTH_END)
    everything = listed(gw, **month)
    # in pages of 7, resumed from each page's last cursor: the same lines, none twice
    paged, token = [], ""
    while True:
        page = listed(gw, **month, page_size=7, page_token=token)
        paged.extend(page)
        if len(page) < 7:
            break
        token = page[-1].cursor
    assert [line.request_id for line in paged] == [line.request_id for line in everything]
    one_card = listed(gw, **month, pan=pans[1])
    assert one_card and {line.masked_pan[-4:] for line in one_card} == {pans[1][-4:]}
    second_outlet = listed(gw, **month, merchant_id="m2", outlet_id="o7")
    assert second_outlet and all(line.acceptor.outlet_id == "o7" for line in second_outlet)
    assert len(second_outlet) + len(listed(gw, **month, merchant_id="m1")) == len(everything)
    assert listed(gw, **month, pan=make_pan(99)) == []             # a card never issued
    assert listed(gw, **month, range_id=2) == []
    # Warsaw in November is UTC+1: 08:00 UTC is 09:00 there
    first = everything[0]
    assert first.local_time == datetime.datetime.fromtimestamp(
        first.time_s, datetime.timezone(datetime.timedelta(hours=1))).isoformat()
    assert first.local_time.endswith("+01:00")


def test_a_fleet_sale_keeps_its_lines_prompts_and_terminal(office):
    gw = office
    mixed_month(gw)
    fleet_lines = [line for line in listed(gw, from_s=MONTH_START, until_s=MONTH_END)
                   if line.driver_id]
    assert len(fleet_lines) == 6
    line = fleet_lines[1]
    assert line.driver_id == "driver-5" and line.vehicle_id == "WX 1234"
    assert line.odometer_km == 1005 and line.volume_ml == 10_000
    assert [(p.product_code, p.volume_ml, p.unit_price_minor, p.amount_minor) for p in line.lines] == \
        [(DIESEL, 10_000, 1_00, 0), (SHOP, 0, 0, 2_00)]
    assert (line.acceptor.merchant_id, line.acceptor.outlet_id) == ("m2", "o7")
    completion = next(x for x in listed(gw, from_s=MONTH_START, until_s=MONTH_END)
                      if x.operation == "COMPLETE")
    assert completion.volume_ml == 20_500 and completion.approved.amount_minor == 30_75
    assert completion.ref_request_id


@pytest.mark.parametrize("query, field", [
    (dict(from_s=10, until_s=5), "until_s"),
    (dict(from_s=-1), "from_s"),
    (dict(page_size=100_001), "page_size"),
    (dict(page_token="zz"), "page_token"),
    (dict(page_token="00" * 23), "page_token"),
    (dict(outlet_id="o1"), "outlet_id"),
    (dict(result=7), "result"),
])
def test_a_bad_query_is_refused_naming_its_field(office, query, field):
    with pytest.raises(grpc.RpcError) as refused:
        listed(office, **query)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in refused.value.details()


def test_terminals_cannot_list_transactions(office):
    terminal = office_pb2_grpc.OfficeServiceStub(office.channel)
    with pytest.raises(grpc.RpcError) as refused:
        list(terminal.ListTransactions(office_pb2.ListTransactionsRequest()))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_request_whose_details_are_not_its_own_is_refused_by_the_core(core):
    """The details ride as the payload, bound by the request's digest: other bytes, or the
    same request id with other details, change nothing."""
    load = core.rq(Op.LOAD, 0, amount_minor=10_00, currency="IDR", payload=b"\x0a\x02m1")
    assert core.apply(load)[0].result == records.Result.APPROVED
    tampered = bytearray(core.rq(Op.PURCHASE, 0, amount_minor=1_00, currency="IDR",
                                 payload=b"\x0a\x02m1"))
    tampered[-1] ^= 1
    assert core.apply(bytes(tampered))[0].result == records.Result.REJECTED_INVALID_REQUEST
    rid = core.new_id()
    first = core.rq(Op.PURCHASE, 0, request_id=rid, amount_minor=1_00, currency="IDR", payload=b"a")
    again = core.rq(Op.PURCHASE, 0, request_id=rid, amount_minor=1_00, currency="IDR", payload=b"b")
    assert core.apply(first)[0].result == records.Result.APPROVED
    assert core.apply(again)[0].result == records.Result.REJECTED_REQUEST_ID_REUSED
