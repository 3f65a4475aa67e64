"""The stories of a terminal that speaks ISO 8583 (profile 1987) to a live gateway over
TLS with its certificate, every byte built and read by tests/iso_terminal.py from
docs/iso8583.md: purchases, a pump's pre-authorization and its completion advice, a
reversal before its original, repeats, an offline sale advised after its card was
blocked, PIN blocks under the terminal's own key (format 0 and 4), a fleet sale, and
bad input, which never costs another connection its answers."""
import socket
import ssl
import subprocess
import sys
import time
import uuid

import pytest

import iso_terminal
from cardgate.v1 import authorization_pb2, common_pb2, fleet_pb2, issuing_pb2, issuing_pb2_grpc
from helpers import create_range, issue, load, make_pan

PIN = "4321"
T0, T1 = "1207163000", "1207163100"           # transmission times (MMDDhhmmss)


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from conftest import LiveGateway
    where = tmp_path_factory.mktemp("iso")
    gateway = LiveGateway(where / "data", iso8583_listen="127.0.0.1:0")
    gateway.gateway.iso8583.message_timeout_s = 0.5         # (the bad-input test's wait)
    create_range(gateway, offline_floor_minor=200_00)
    bureau = issuing_pb2_grpc.IssuingServiceStub(gateway.open("bureau-1"))
    gateway.bureau = bureau
    gateway.keys = {}
    for terminal, kind in (("TERM0001", "tdes"), ("TERM0002", "aes")):
        out = where / f"{terminal}.key"
        shown = subprocess.run(
            [sys.executable, "-m", "cardgate.gateway.cli.main", "keys", "terminal-pin-key",
             "--data-dir", str(where / "data"), "m1", terminal, "--kind", kind, "--out",
             str(out)], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
        assert "check value" in shown.stdout and out.read_text().strip() not in shown.stdout
        gateway.keys[terminal] = bytes.fromhex(out.read_text())
    wrapped = (where / "data" / "keys" / "terminal-pin-keys.wrapped").read_bytes()
    assert not any(key in wrapped or key.hex().encode() in wrapped.lower()
                   for key in gateway.keys.values())            # kept wrapped by the KEK
    yield gateway
    gateway.close()


_serials = iter(range(10, 10_000))


def card(gw, amount=100_00, pin=None) -> str:
    pan = make_pan(next(_serials))
    issue(gw, [pan])
    load(gw, pan, amount)
    if pin:
        gw.bureau.SetCardPin(issuing_pb2.SetCardPinRequest(request_id=str(uuid.uuid4()),
                                                           pan=pan, pin=pin))
    return pan


def balance(gw, pan) -> int:
    return gw.gateway.store.read_card(gw.gateway.store.pan_key.card_key(pan))[1].balance_minor


def sale(mti, stan, amount, pan, terminal="TERM0001", when=T0, **more) -> bytes:
    return iso_terminal.build(mti, {"2": pan, "3": "000000", "4": f"{amount:012d}", "7": when,
                                    "11": stan, "41": terminal, "42": "m1".ljust(15),
                                    "49": "978", **more})


def original(mti, stan, when=T0):
    return {"90": f"{mti}{stan}{when}" + "0" * 22}


def send(gw, *frames, name="terminal-1"):
    return iso_terminal.exchange(("127.0.0.1", gw.gateway.iso8583.port), gw.certs, name,
                                 list(frames))


def test_a_purchase_approved_then_one_declined_and_the_same_message_again(gw):
    pan = card(gw)
    answers = send(gw, sale("0200", "000001", 30_00, pan), sale("0200", "000002", 500_00, pan))
    approved, declined = answers["000001"], answers["000002"]
    assert (approved["t"], approved["39"], approved["41"]) == ("0210", "00", "TERM0001")
    assert approved["38"].isdigit() and "2" not in approved
    assert approved["54"] == "0001978C000000007000" "0002978C000000007000"
    assert declined["39"] == "51" and "38" not in declined
    assert send(gw, sale("0200", "000001", 30_00, pan)) == {"000001": approved}   # repeat
    assert balance(gw, pan) == 70_00


def test_a_pumps_preauthorization_then_its_completion_advice_for_less(gw):
    pan = card(gw)
    held = send(gw, sale("0100", "000010", 80_00, pan))["000010"]
    assert (held["t"], held["39"]) == ("0110", "00")
    advice = sale("0220", "000011", 61_40, pan, when=T1, **original("0100", "000010"))
    done = send(gw, advice)["000011"]
    assert (done["t"], done["39"]) == ("0230", "00")
    repeat = sale("0221", "000011", 61_40, pan, when=T1, **original("0100", "000010"))
    assert send(gw, repeat)["000011"] == done
    assert balance(gw, pan) == 100_00 - 61_40


def test_a_timed_out_purchase_reversed_before_it_arrives_is_never_charged(gw):
    pan = card(gw)
    reversal = iso_terminal.build("0420", {"7": T1, "11": "000021", "41": "TERM0001",
                                           "42": "m1".ljust(15), **original("0200", "000020")})
    assert send(gw, reversal)["000021"]["39"] == "00"
    assert send(gw, reversal.replace(b"0420", b"0421", 1))["000021"]["39"] == "00"
    assert send(gw, sale("0200", "000020", 10_00, pan))["000020"]["39"] == "12"
    assert balance(gw, pan) == 100_00


def test_an_offline_sale_after_the_card_was_blocked_is_posted_flagged_and_owed(gw):
    pan = card(gw)
    gw.issuing.SetCardStatus(issuing_pb2.SetCardStatusRequest(
        request_id=str(uuid.uuid4()), pan=pan, status=authorization_pb2.CARD_STATUS_BLOCKED))
    when = time.gmtime(time.time() - 2 * 3600)          # the range's local time is UTC
    offline = {"12": time.strftime("%H%M%S", when), "13": time.strftime("%m%d", when),
               "38": "OFF123"}
    posted = send(gw, sale("0220", "000030", 130_00, pan, **offline))["000030"]
    assert (posted["t"], posted["39"], posted["38"]) == ("0230", "00", "OFF123")
    assert posted["54"].startswith("0001978D000000003000")          # the card owes 30.00
    assert send(gw, sale("0221", "000030", 130_00, pan, **offline))["000030"] == posted
    assert balance(gw, pan) == -30_00
    flagged = [f for f in gw.fleet.ListFlagged(fleet_pb2.ListFlaggedRequest()).transactions
               if f.masked_pan.endswith(pan[-4:])]
    assert [(f.offline, f.amount.amount_minor) for f in flagged] == [
        (fleet_pb2.OFFLINE_REVIEW_POSTED, 130_00)]
    # A sale on the blocked card now, online, is declined.
    assert send(gw, sale("0200", "000031", 1_00, pan))["000031"]["39"] == "62"


def test_pin_blocks_right_and_wrong_under_each_terminals_key(gw):
    pan = card(gw, pin=PIN)
    tdes, aes = gw.keys["TERM0001"], gw.keys["TERM0002"]
    answers = send(
        gw,
        sale("0200", "000040", 1_00, pan, **{"52": iso_terminal.pin_block_format_0(tdes, PIN, pan)}),
        sale("0200", "000041", 1_00, pan, **{"52": iso_terminal.pin_block_format_0(tdes, "9999", pan)}),
        sale("0200", "000042", 1_00, pan, "TERM0002",
             **{"52": iso_terminal.pin_block_format_4(aes, PIN, pan)}),
        sale("0200", "000043", 1_00, pan),                                   # no PIN
        # A block made under another key than the terminal's does not decipher to a PIN.
        sale("0200", "000044", 1_00, pan, **{"52": iso_terminal.pin_block_format_0(
            bytes(range(16)), PIN, pan)}),
        # A terminal the host holds no PIN key for may not send PIN blocks.
        sale("0200", "000045", 1_00, pan, "TERM0003",
             **{"52": iso_terminal.pin_block_format_0(tdes, PIN, pan)}),
        # A format 0 block from the AES terminal is the wrong size for its key.
        sale("0200", "000046", 1_00, pan, "TERM0002",
             **{"52": iso_terminal.pin_block_format_0(tdes, PIN, pan)}),
    )
    assert {stan: a["39"] for stan, a in answers.items()} == {
        "000040": "00", "000041": "55", "000042": "00", "000043": "55", "000044": "55",
        "000045": "58", "000046": "55"}
    assert balance(gw, pan) == 98_00


def test_a_fleet_sale_carries_litres_and_the_odometer(gw):
    pan = card(gw)
    gw.fleet.DefineProduct(fleet_pb2.DefineProductRequest(
        request_id=str(uuid.uuid4()), product_code=21, kind=fleet_pb2.PRODUCT_KIND_FUEL,
        name="diesel"))
    line = "021" + f"{40_250:09d}" + f"{1_599:09d}" + f"{64_36:012d}"   # 40.25 l at 15.99
    data = f"PL{len(line):02d}{line}OD06123456DR04D-17VH07B-XY 99"
    answer = send(gw, sale("0200", "000050", 64_36, pan, **{"63": data}))["000050"]
    assert answer["39"] == "00"
    assert balance(gw, pan) == 100_00 - 64_36


def raw_exchange(gw, payload: bytes):
    """Write raw bytes on a fresh TLS connection: the answer's fields, or None when the
    host closed the connection without one."""
    context = ssl.create_default_context(cafile=str(gw.certs / "ca.crt"))
    context.load_cert_chain(str(gw.certs / "terminal-1.crt"), str(gw.certs / "terminal-1.key"))
    with socket.create_connection(("127.0.0.1", gw.gateway.iso8583.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(payload)
        stream = tls.makefile("rb")
        head = stream.read(2)
        if len(head) < 2:
            return None
        return iso_terminal.parse(stream.read(int.from_bytes(head, "big")))


def framed(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


@pytest.mark.parametrize("payload, expected", [
    # Answered format error, echoing the STAN: a non-numeric amount, an unknown type, a
    # bitmap announcing a field the message does not hold.
    (lambda pan: framed(sale("0200", "000060", 5_00, pan).replace(
        b"000000000500", b"00000000050X")), "30"),
    (lambda pan: framed(sale("0300", "000060", 5_00, pan)), "30"),
    (lambda pan: framed(sale("0200", "000060", 5_00, pan, **{"37": "RRN000000001"})[:-12]), "30"),
    # Not answerable: a length of 0, one above 4,096 bytes, a message cut short.
    (lambda pan: b"\x00\x00" + sale("0200", "000060", 5_00, pan), None),
    (lambda pan: b"\x10\x01" + b"0" * 4097, None),
    (lambda pan: framed(sale("0200", "000060", 5_00, pan))[:-5], None),
])
def test_bad_input_is_answered_format_error_or_closed_and_changes_nothing(gw, payload, expected):
    pan = card(gw)
    answer = raw_exchange(gw, payload(pan))
    if expected is None:
        assert answer is None
    else:
        assert (answer["39"], answer["11"]) == (expected, "000060")
    assert balance(gw, pan) == 100_00
    # The listener keeps serving everyone else.
    stan = f"{next(_serials):06d}"
    assert send(gw, sale("0200", stan, 1_00, pan))[stan]["39"] == "00"


def test_grpc_takes_the_same_offline_advice_and_refuses_malformed_ones(gw):
    """PurchaseRequest.offline is the gRPC way to the same forced post."""
    import grpc
    pan = card(gw, amount=10_00)
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 600))

    def advise(request_id, **offline):
        return gw.auth.Purchase(authorization_pb2.PurchaseRequest(
            request_id=request_id, pan=pan, amount=common_pb2.Money(
                amount_minor=25_00, currency="EUR"),
            offline=authorization_pb2.OfflineApproval(**offline))).authorization
    request_id = str(uuid.uuid4())
    posted = advise(request_id, approval_code="A1B2C3", approved_local=when)
    assert posted.result_code == common_pb2.RESULT_CODE_APPROVED
    assert posted.flagged_for_review and "offline" in posted.message
    assert posted.balance.balance_minor == -15_00
    assert advise(request_id, approval_code="A1B2C3", approved_local=when) == posted
    for bad, field in (({"approval_code": "", "approved_local": when}, "offline.approval_code"),
                       ({"approval_code": "TOOLONG7", "approved_local": when},
                        "offline.approval_code"),
                       ({"approval_code": "A1", "approved_local": "2026-02-30T10:00:00"},
                        "offline.approved_local"),
                       ({"approval_code": "A1", "approved_local": "yesterday"},
                        "offline.approved_local")):
        with pytest.raises(grpc.RpcError) as refused:
            advise(str(uuid.uuid4()), **bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in refused.value.details()
    assert balance(gw, pan) == -15_00
