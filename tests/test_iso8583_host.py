"""ISO 8583 messages, built byte by byte from docs/iso8583.md, answered by the host
(gateway/iso8583/host.py) through the same Operations as gRPC on a real store: a
purchase approved and declined, a pump's 0100 then its 0220 completion for less, a
reversal before its original, repeats answered alike, network management, bad input
answered format error with nothing changed."""
import asyncio
import uuid

import pytest

from cardgate.gateway.api.operations import Operations
from cardgate.gateway.iso8583 import codec, host
from cardgate.gateway.security.pki import Identity
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import BatchingWriter
from cardgate.v1 import authorization_pb2, common_pb2

import iso_terminal
from helpers import make_pan, snapshot

PAN = make_pan(1)
message = iso_terminal.build          # (mti, fields, profile): bytes, from the docs' tables


def sale(mti, stan, amount, pan=PAN, **more):
    return message(mti, {"2": pan, "3": "000000", "4": f"{amount:012d}", "7": "1207163000",
                         "11": stan, "41": "TERM0001", "42": "m1".ljust(15), "49": "978",
                         **more})


def original(mti, stan):
    return {"90": f"{mti}{stan}1207163000" + "0" * 22}


@pytest.fixture
def ops(tmp_path):
    store = Store(tmp_path / "data", sync=False)
    writer = BatchingWriter(store).start()
    operations = Operations(store, writer)
    operations.create_range(str(uuid.uuid4()), 1, "627700", 16, "EUR", "gift")
    operations.issue_gift_cards(str(uuid.uuid4()), 1, [(PAN, 209912)])
    operations.submit_one(operations.pack_operation("load", authorization_pb2.LoadValueRequest(
        request_id=str(uuid.uuid4()), pan=PAN, amount=common_pb2.Money(
            amount_minor=100_00, currency="EUR"))), "load")
    yield operations
    writer.stop()
    store.close()


TERMINAL = Identity("terminal", "terminal-1", 1, merchant_id="m1", outlet_id="o1")


def ask(ops, data: bytes, metrics=None) -> dict:
    answer = asyncio.run(host.respond(ops, data, TERMINAL, metrics=metrics))
    return codec.decode(answer)


def balance(ops):
    return ops.balance(PAN)[1].balance_minor


def test_a_purchase_is_approved_then_one_past_the_balance_declined(ops):
    approved = ask(ops, sale("0200", "000001", 30_00))
    assert approved["t"] == "0210" and approved["39"] == "00" and approved["11"] == "000001"
    assert "2" not in approved and "35" not in approved      # a full PAN is never returned
    assert len(approved["38"]) == 6 and approved["38"].isdigit()
    # Field 54: ledger then available balance, EUR, credit, 70.00.
    assert approved["54"] == "0001978C000000007000" + "0002978C000000007000"
    declined = ask(ops, sale("0200", "000002", 500_00))
    assert declined["39"] == "51" and "38" not in declined
    assert balance(ops) == 70_00


def test_a_pumps_preauthorization_then_its_completion_advice_for_less(ops):
    held = ask(ops, sale("0100", "000010", 50_00))
    assert held["t"] == "0110" and held["39"] == "00"
    assert held["54"].endswith("0002978C000000005000")          # available: 100 - 50 held
    done = ask(ops, sale("0220", "000011", 32_10, **original("0100", "000010")))
    assert done["t"] == "0230" and done["39"] == "00"
    assert balance(ops) == 100_00 - 32_10
    again = ask(ops, sale("0221", "000011", 32_10, **original("0100", "000010")))
    assert again == done                                        # a repeat: the same answer
    assert balance(ops) == 100_00 - 32_10


def test_a_reversal_before_its_original_leaves_the_original_declined(ops):
    reversal = message("0420", {"7": "1207163500", "11": "000021", "41": "TERM0001",
                                **original("0200", "000020")})
    assert ask(ops, reversal)["39"] == "00"
    late = ask(ops, sale("0200", "000020", 10_00))
    assert late["39"] == "12"                                   # already reversed
    assert balance(ops) == 100_00


def test_the_same_message_sent_again_is_answered_as_the_first_time(ops):
    first = ask(ops, sale("0200", "000030", 5_00))
    assert ask(ops, sale("0200", "000030", 5_00)) == first
    assert balance(ops) == 95_00


def test_network_management_is_answered_by_the_host(ops):
    echo = ask(ops, message("0800", {"7": "1207163000", "11": "000040", "70": "301"}))
    assert (echo["t"], echo["39"], echo["70"], echo["11"]) == ("0810", "00", "301", "000040")


@pytest.mark.parametrize("data", [
    sale("0200", "000050", 5_00).replace(b"000000000500", b"00000000050X"),   # amount
    sale("0300", "000050", 5_00),                                              # type
    sale("0200", "000050", 5_00).replace(
        b"000000" + b"000000000500", b"200000" + b"000000000500"),             # a return, no 90
    sale("0200", "000050", 5_00).replace(
        b"000000" + b"000000000500", b"310000" + b"000000000500"),             # a balance code
    sale("0200", "000050", 5_00, pan="6277001"),                               # a short PAN
])
def test_bad_input_is_answered_format_error_and_changes_nothing(ops, data):
    before = snapshot(ops.store)
    answer = ask(ops, data)
    assert answer["39"] == "30" and answer.get("11") == "000050"
    assert snapshot(ops.store) == before


def over_tls(gw, frames) -> dict:
    """Send the framed messages at once on one TLS connection with the terminal's
    certificate; return the answers by STAN, read as docs/iso8583.md describes them."""
    return iso_terminal.exchange(("127.0.0.1", gw.gateway.iso8583.port), gw.certs,
                                 "terminal-1", frames)


def live_gateway_with_a_card(tmp_path, **options):
    from conftest import LiveGateway
    from helpers import create_range, issue, load
    gw = LiveGateway(tmp_path / "data", iso8583_listen="127.0.0.1:0", **options)
    create_range(gw)
    issue(gw, [PAN])
    load(gw, PAN, 100_00)
    return gw


def test_a_terminal_over_tls_sends_many_messages_at_once_and_matches_answers_by_stan(tmp_path):
    """The listener of a live gateway: a terminal's certificate, one TLS connection, ten
    purchases and an echo written at once; every answer comes back, matched by STAN."""
    gw = live_gateway_with_a_card(tmp_path)
    try:
        stans = [f"{n:06d}" for n in range(100, 110)]
        answers = over_tls(gw, [sale("0200", stan, 1_00) for stan in stans] +
                           [message("0800", {"7": "1207163000", "11": "000999", "70": "301"})])
        assert {stan: answers[stan]["39"] for stan in stans} == dict.fromkeys(stans, "00")
        assert answers["000999"]["t"] == "0810"
        assert gw.gateway.store.read_card(gw.gateway.store.pan_key.card_key(PAN))[1] \
            .balance_minor == 90_00
    finally:
        gw.close()


def test_a_terminal_past_its_rate_is_answered_send_again_later(tmp_path):
    gw = live_gateway_with_a_card(tmp_path, terminal_rate_per_s=0.001, terminal_burst=3)
    try:
        stans = [f"{n:06d}" for n in range(200, 206)]
        answers = over_tls(gw, [sale("0200", stan, 1_00) for stan in stans])
        codes = sorted(answers[stan]["39"] for stan in stans)
        # A burst of 3, of which the set-up's load took one: 2 approved, 4 told to retry.
        assert codes == ["00"] * 2 + ["96"] * 4, codes
        assert gw.gateway.store.read_card(gw.gateway.store.pan_key.card_key(PAN))[1] \
            .balance_minor == 98_00
    finally:
        gw.close()

def test_iso_traffic_is_counted_and_logged_as_grpc_traffic_is(ops, caplog):
    import logging

    from cardgate.gateway.ops.metrics import Metrics
    metrics = Metrics()
    with caplog.at_level(logging.INFO, logger="cardgate.requests"):
        ask(ops, sale("0200", "000060", 5_00), metrics)
        ask(ops, sale("0200", "000061", 500_00), metrics)
        ask(ops, sale("0200", "000062", 5_00).replace(b"000000000500", b"00000000050X"), metrics)

    def counted(result):
        return metrics.requests.labels("ISO8583/0200", "ISO8583/0200", result)._value.get()
    assert counted("RESULT_CODE_APPROVED") == counted("RESULT_CODE_DECLINED_INSUFFICIENT_FUNDS") \
        == counted("FORMAT_ERROR") == 1
    assert metrics.declines.labels("DECLINED_INSUFFICIENT_FUNDS")._value.get() == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "cardgate.requests"]
    assert len(lines) == 3 and all(line.startswith("ISO8583/0200 by terminal-1") for line in lines)
    assert "627700******" in lines[0] and PAN not in caplog.text


def sale_1993(mti, stan, amount, **more):
    return message(mti, {"2": PAN, "3": "000000", "4": f"{amount:012d}", "7": "1207163000",
                         "11": stan, "12": "261207173000", "24": "200", "41": "TERM0001",
                         "49": "978", **more}, "1993")


def ask_1993(ops, data: bytes) -> dict:
    return codec.decode(asyncio.run(host.respond(ops, data, TERMINAL, "1993")), "1993")


def test_profile_1993_speaks_the_same_stories_with_action_codes(ops):
    bought = ask_1993(ops, sale_1993("1200", "000070", 10_00))
    assert (bought["t"], bought["39"]) == ("1210", "000")
    assert ask_1993(ops, sale_1993("1200", "000071", 500_00))["39"] == "116"
    held = ask_1993(ops, sale_1993("1100", "000072", 40_00))
    assert (held["t"], held["39"]) == ("1110", "000")
    done = ask_1993(ops, sale_1993("1220", "000073", 25_00,
                                   **{"56": "1100" + "000072" + "261207173000" + "06123456"}))
    assert (done["t"], done["39"]) == ("1230", "000")
    assert balance(ops) == 100_00 - 10_00 - 25_00
    reversed_ = ask_1993(ops, message("1420", {
        "7": "1207163500", "11": "000074", "12": "261207173500", "41": "TERM0001",
        "56": "1200" + "000070" + "261207173000" + "06123456"}, "1993"))
    assert (reversed_["t"], reversed_["39"]) == ("1430", "000")
    assert balance(ops) == 100_00 - 25_00
    echo = ask_1993(ops, message("1804", {"7": "1207163000", "11": "000075", "24": "831"},
                                 "1993"))
    assert (echo["t"], echo["39"], echo["24"]) == ("1814", "000", "831")
    # A 1987 message on a 1993 listener is not taken.
    assert ask_1993(ops, sale("0200", "000076", 1_00))["39"] == "904"


def test_a_return_refunds_the_purchase_field_90_names_and_no_more(ops):
    assert ask(ops, sale("0200", "000080", 30_00))["39"] == "00"
    back = sale("0200", "000081", 10_00, **original("0200", "000080")).replace(
        b"000000" + b"000000001000", b"200000" + b"000000001000")
    refunded = ask(ops, back)
    assert (refunded["t"], refunded["39"]) == ("0210", "00")
    assert balance(ops) == 100_00 - 30_00 + 10_00
    too_much = sale("0200", "000082", 25_00, **original("0200", "000080")).replace(
        b"000000" + b"000000002500", b"200000" + b"000000002500")
    assert ask(ops, too_much)["39"] == "13"                     # past what is left to refund
    assert balance(ops) == 80_00


def test_a_message_naming_another_merchant_is_not_permitted_and_changes_nothing(ops):
    before = snapshot(ops.store)
    other = sale("0200", "000090", 5_00).replace(b"m1".ljust(15), b"m2".ljust(15))
    assert ask(ops, other)["39"] == "58"
    assert snapshot(ops.store) == before


def fuel_data(*subfields) -> str:
    return "".join(f"{tag}{len(value):02d}{value}" for tag, value in subfields)


def test_a_fuel_sale_carries_its_lines_odometer_driver_and_vehicle_in_field_63(tmp_path):
    from cardgate.v1 import fleet_pb2
    gw = live_gateway_with_a_card(tmp_path)
    try:
        gw.fleet.DefineProduct(fleet_pb2.DefineProductRequest(
            request_id=str(uuid.uuid4()), product_code=7, kind=fleet_pb2.PRODUCT_KIND_FUEL,
            name="diesel"))
        line = "007" + f"{30_000:09d}" + f"{1_659:09d}" + f"{49_77:012d}"   # 30 l at 16.59
        data = fuel_data(("PL", line), ("OD", "123456"), ("DR", "D-17"), ("VH", "B-XY 99"))
        answers = over_tls(gw, [
            sale("0200", "000300", 49_77, **{"63": data}),
            sale("0200", "000301", 1_00, **{"63": fuel_data(("XX", "1"))}),        # unknown
            sale("0200", "000302", 1_00, **{"63": fuel_data(("PL", "007123"))}),   # short line
            sale("0200", "000303", 1_00, **{"63": "PL9"}),                         # cut short
        ])
        assert answers["000300"]["39"] == "00"
        assert [answers[s]["39"] for s in ("000301", "000302", "000303")] == ["30"] * 3
        assert gw.gateway.store.read_card(gw.gateway.store.pan_key.card_key(PAN))[1] \
            .balance_minor == 100_00 - 49_77
    finally:
        gw.close()


def test_an_offline_sale_advised_after_the_card_was_blocked_is_posted_and_flagged(tmp_path):
    """A pump approved 150.00 offline (its floor: 200.00) on a card holding 100.00; the
    card was blocked before the link came back. The advice (0220, no field 90, the
    terminal's approval code in 38) is posted all the same: the card owes 50.00, the sale
    is listed for review, the audit counts it. Sent again (0221): posted once."""
    import time as time_mod

    from cardgate.gateway.store.audit import audit
    from cardgate.v1 import fleet_pb2, issuing_pb2
    from helpers import create_range, issue, load
    from conftest import LiveGateway
    gw = LiveGateway(tmp_path / "data", iso8583_listen="127.0.0.1:0")
    try:
        create_range(gw, offline_floor_minor=200_00)
        issue(gw, [PAN])
        load(gw, PAN, 100_00)
        gw.issuing.SetCardStatus(issuing_pb2.SetCardStatusRequest(
            request_id=str(uuid.uuid4()), pan=PAN, status=authorization_pb2.CARD_STATUS_BLOCKED))
        when = time_mod.gmtime(time_mod.time() - 3600)          # the range's zone is UTC
        offline = {"12": time_mod.strftime("%H%M%S", when), "13": time_mod.strftime("%m%d", when),
                   "38": "Y10042"}
        answers = over_tls(gw, [sale("0220", "000400", 150_00, **offline)])
        assert answers["000400"]["t"] == "0230" and answers["000400"]["39"] == "00"
        assert answers["000400"]["38"] == "Y10042"
        assert answers["000400"]["54"].startswith("0001978D000000005000")     # owes 50.00
        again = over_tls(gw, [sale("0221", "000400", 150_00, **offline)])
        assert again == answers
        too_much = over_tls(gw, [sale("0220", "000401", 200_01, **offline)])
        assert too_much["000401"]["39"] == "61"                  # above the floor: not posted
        flagged = gw.fleet.ListFlagged(fleet_pb2.ListFlaggedRequest()).transactions
        assert [(f.offline, f.amount.amount_minor, f.masked_pan) for f in flagged] == [
            (fleet_pb2.OFFLINE_REVIEW_POSTED, 150_00, "627700******" + PAN[-4:]),
            (fleet_pb2.OFFLINE_REVIEW_REFUSED, 200_01, "627700******" + PAN[-4:])]
        assert flagged[1].result_code == common_pb2.RESULT_CODE_DECLINED_OFFLINE_FLOOR_EXCEEDED
    finally:
        gw.close()
    violations, counts = audit(tmp_path / "data")
    assert violations == [] and counts["offline_sales_minor"] == 150_00
    assert counts["owing_minor"] == {"EUR": 50_00}
