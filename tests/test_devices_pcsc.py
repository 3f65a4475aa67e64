"""PC/SC through the real pcscd and pyscard, with simulated DESFire cards in vpcd's
virtual readers: readers, card insert and remove events, APDU exchanges, and the
errors a bureau operator meets (no pcscd, no card, a card pulled out mid-exchange,
unexpected status words)."""
import os
import subprocess
import sys
import threading
import time

import pytest

from cardgate.devices import desfire, pcsc
from cardgate.devices.desfire_card import DesfireCard
from cardgate.devices.vpcd import VirtualCardSlot

UID = bytes.fromhex("04782E21801D80")
AID = b"\x01\x02\x03"


@pytest.fixture
def card_in_reader(pcscd):
    card = DesfireCard(UID)
    slot = VirtualCardSlot(card, 0)
    deadline = time.monotonic() + 10
    while True:                     # pcscd polls the driver: wait until it sees the card
        try:
            connection = pcsc.Connection(pcscd[0])
            break
        except pcsc.PcscError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield card, slot, connection
    connection.close()
    slot.remove()


def test_both_virtual_readers_are_listed(pcscd):
    assert set(pcscd.values()) <= set(pcsc.readers())


def test_a_desfire_application_files_and_values_through_pcscd(card_in_reader):
    card, slot, connection = card_in_reader
    assert connection.atr == card.atr
    d = desfire.Desfire(connection.transmit)
    assert d.get_version()[14:21] == UID
    d.create_application(AID, 0x0F, 2)
    d.select_application(AID)
    d.create_std_data_file(1, 0, 0xEEEE, 120)                     # free access
    d.write_data(1, 0, bytes(range(120)))
    assert d.read_data(1, 0, 0) == bytes(range(120))            # three chained frames
    d.create_value_file(2, 0, 0xEEEE, 0, 1_000_00, 0)
    d.credit(2, 25_00)
    assert d.get_value(2) == 0                                    # not committed yet
    d.commit_transaction()
    assert d.get_value(2) == 25_00
    with pytest.raises(desfire.DesfireError, match="BOUNDARY_ERROR"):
        d.debit(2, 25_01)
    with pytest.raises(desfire.DesfireError, match="DUPLICATE_ERROR"):
        d.create_std_data_file(1, 0, 0xEEEE, 8)
    assert slot.apdus >= 12


def test_unexpected_status_words_are_named(card_in_reader):
    _, _, connection = card_in_reader
    answer = connection.transmit(bytes.fromhex("00A4040000"))     # not a DESFire command
    with pytest.raises(pcsc.PcscError, match="unexpected status word 6E00"):
        pcsc.check_status(answer)


def test_a_card_pulled_out_mid_exchange_and_no_card_at_all(card_in_reader, pcscd):
    _, slot, connection = card_in_reader
    slot.remove()
    with pytest.raises(pcsc.CardRemoved, match="left Virtual PCD 00 00"):
        desfire.Desfire(connection.transmit).get_version()
    with pytest.raises(pcsc.PcscError, match="no card in Virtual PCD 00 01"):
        pcsc.Connection(pcscd[1])
    with pytest.raises(pcsc.PcscError, match="no reader named"):
        pcsc.Connection("Nobody's reader")


def test_insert_and_remove_are_watched(pcscd):
    events, seen = [], threading.Event()

    def note(kind):
        def record(reader):
            events.append((kind, reader))
            seen.set()
        return record

    stop = pcsc.watch(note("in"), note("out"))
    try:
        slot = VirtualCardSlot(DesfireCard(UID), 1)
        deadline = time.monotonic() + 10
        while ("in", pcscd[1]) not in events and time.monotonic() < deadline:
            time.sleep(0.05)
        slot.remove()
        while ("out", pcscd[1]) not in events and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop()
    assert ("in", pcscd[1]) in events and ("out", pcscd[1]) in events


def test_without_pcscd_the_error_says_so():
    probe = subprocess.run(
        [sys.executable, "-c", "from cardgate.devices import pcsc\n"
         "try:\n    pcsc.readers()\nexcept pcsc.PcscError as e:\n    print(e)"],
        env={**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"},
        capture_output=True, text=True, timeout=60)
    assert "no pcscd answers" in probe.stdout, probe.stdout + probe.stderr


def test_aes_authentication_diversified_keys_access_rights_and_key_changes(card_in_reader):
    from cardgate.devices.diversify import diversify_aes128

    card, _, connection = card_in_reader
    d = desfire.Desfire(connection.transmit)
    master = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    app_key, read_key = (diversify_aes128(master, UID, AID, bytes([n])) for n in (0, 1))
    d.authenticate_aes(0, bytes(16))                     # the card master key
    d.create_application(AID, 0x0F, 2)
    d.select_application(AID)
    d.authenticate_aes(0, bytes(16))                     # a new application's keys are zero
    d.change_key(1, read_key, bytes(16))                 # another key: old value needed
    d.create_std_data_file(1, 0, 0x1F10, 16)             # read: key 1, write: never, r&w: key 1
    d.change_key(0, app_key)                             # its own key: the session ends
    assert d.session is None
    with pytest.raises(desfire.DesfireError, match="AUTHENTICATION_ERROR"):
        d.authenticate_aes(0, bytes(16))                 # the old key no longer works
    with pytest.raises(desfire.DesfireError, match="PERMISSION_DENIED"):
        d.read_data(1, 0, 0)                             # not without key 1
    d.authenticate_aes(1, read_key)
    d.write_data(1, 0, b"card data 123456")
    assert d.read_data(1, 0, 0) == b"card data 123456"   # answers MAC-checked
    assert card.applications[AID].keys == [app_key, read_key]


def test_a_wrong_mac_ends_the_session(card_in_reader):
    _, _, connection = card_in_reader

    def tamper(apdu):
        answer = connection.transmit(apdu)
        return answer[:-3] + bytes([answer[-3] ^ 1]) + answer[-2:] if apdu[1] == desfire.GET_VERSION else answer

    d = desfire.Desfire(tamper)
    d.authenticate_aes(0, bytes(16))
    with pytest.raises(desfire.DesfireError, match="MAC is wrong"):
        d.get_version()
    assert d.session is None
