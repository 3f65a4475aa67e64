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
from cardgate.devices.vpcd import VirtualCardSlot, insert

UID = bytes.fromhex("04782E21801D80")
AID = b"\x01\x02\x03"


@pytest.fixture
def card_in_reader(pcscd):
    card = DesfireCard(UID)
    slot, connection = insert(card, 0)
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


def test_personalization_writes_verifies_and_can_be_resumed_after_the_card_is_pulled(pcscd):
    from cardgate.devices import personalize as perso

    master = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    profile = perso.ChipProfile(aid=b"\xF0\x01\x01", program_id=1, offline_balance_minor=25_00)
    pan, expiry = "6277001234567890", "2912"
    card = DesfireCard(UID)

    # First run: the card leaves the reader after its value file was credited.
    slot, connection = insert(card, 0)
    exchanges = []

    def flaky(apdu):
        exchanges.append(apdu[1])
        if apdu[1] == desfire.COMMIT_TRANSACTION:
            slot.remove()
        return connection.transmit(apdu)

    d = desfire.Desfire(flaky)
    with pytest.raises(pcsc.CardRemoved):
        perso.personalize(d, perso.card_uid(d), profile, pan, expiry, master)
    connection.close()
    assert card.applications[profile.aid].keys[0] == bytes(16)   # not finished: still factory

    # Put back and run again: it finishes, and credits nothing twice.
    slot, connection = insert(card, 0)
    d = desfire.Desfire(connection.transmit)
    perso.personalize(d, perso.card_uid(d), profile, pan, expiry, master)
    app_key, read_key = perso.card_keys(master, UID, profile.aid)
    assert card.applications[profile.aid].keys == [app_key, read_key]
    d.select_application(profile.aid)
    d.authenticate_aes(1, read_key)
    assert perso.parse_card_data(d.read_data(1, 0, 0)) == (pan, expiry, 1)
    assert d.get_value(2) == 25_00
    perso.personalize(d, UID, profile, pan, expiry, master)      # a third run only verifies
    with pytest.raises(desfire.DesfireError, match="differs"):
        perso.verify(d, UID, profile, "6277001234567891", expiry, master)
    connection.close()
    slot.remove()

