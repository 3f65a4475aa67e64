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
    d.authenticate_iso(0, bytes(16))                     # the card master key: the factory's DES zeros
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
    assert [k.value for k in card.applications[AID].keys] == [app_key, read_key]


def test_a_wrong_mac_ends_the_session(card_in_reader):
    _, _, connection = card_in_reader

    def tamper(apdu):
        answer = connection.transmit(apdu)
        return answer[:-3] + bytes([answer[-3] ^ 1]) + answer[-2:] if apdu[1] == desfire.GET_VERSION else answer

    d = desfire.Desfire(tamper)
    d.authenticate_iso(0, bytes(16))
    with pytest.raises(desfire.DesfireError, match="MAC is wrong"):
        d.get_version()
    assert d.session is None


MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
PAN, EXPIRY = "6277001234567890", "2912"


def _profile():
    from cardgate.devices import personalize as perso
    return perso.ChipProfile(aid=b"\xF0\x01\x01", program_id=1, offline_balance_minor=25_00)


def _read_back(d, native_name):
    """Listings and settings, then the card data with the read key, as a terminal reads."""
    from cardgate.devices import personalize as perso

    profile = _profile()
    d.select_application(desfire.PICC)
    version = d.get_version()
    assert version[:14] == bytes.fromhex("04010101001A05" "04010101041A05"), native_name
    assert d.get_key_settings() == (0x0B, 1, "AES") and d.get_key_version(0) == 1
    assert d.get_application_ids() == [profile.aid]
    d.select_application(profile.aid)
    assert d.get_key_settings() == (0x0B, 2, "AES")
    assert [d.get_key_version(n) for n in (0, 1)] == [1, 1]
    assert d.get_file_ids() == [1, 2]
    assert d.get_file_settings(1) == desfire.FileSettings(0, 0, 0x1000, size=32)
    assert d.get_file_settings(2) == desfire.FileSettings(2, 0, 0x1000, lower=0, upper=1_000_00)
    _, read_key = perso.card_keys(MASTER, UID, profile.aid)
    d.authenticate_aes(1, read_key)
    assert perso.parse_card_data(d.read_data(1, 0, 0)) == (PAN, EXPIRY, 1)
    assert d.get_value(2) == 25_00
    with pytest.raises(desfire.DesfireError, match="PERMISSION_DENIED"):
        d.write_data(1, 0, b"x")                          # key 1 only reads


def _bureau_verify(*args):
    return subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", "bureau", "verify", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_a_factory_fresh_card_personalized_then_read_in_both_framings_and_verified(pcscd, tmp_path):
    from cardgate.devices import personalize as perso

    card = DesfireCard(UID)
    picc = card.applications[desfire.PICC]
    assert (picc.keys[0].kind, picc.keys[0].value, picc.keys[0].version, picc.key_settings) == \
        ("DES/2K3DES", bytes(16), 0, 0x0F)                          # as it leaves the factory
    slot, connection = insert(card, 0)
    try:
        answers = []                                                # a one-byte native frame
        asking = threading.Thread(target=lambda: answers.append(connection.transmit(bytes([desfire.GET_VERSION]))),
                                  daemon=True)
        asking.start()
        asking.join(10)
        assert answers, "a one-byte native frame got no answer in 10 s (taken for a vpcd control code?)"
        assert answers[0][0] == 0xAF and answers[0][1:] == bytes.fromhex("04010101001A05")
        d = desfire.Desfire(connection.transmit)
        perso.personalize(d, perso.card_uid(d), _profile(), PAN, EXPIRY, MASTER)
        _read_back(desfire.Desfire(connection.transmit), "iso")
        _read_back(desfire.Desfire(connection.transmit, native=True), "native")
        connection.close()

        (tmp_path / "master.key").write_text(MASTER.hex())
        for framing in ("iso", "native"):
            done = _bureau_verify("--master-key", str(tmp_path / "master.key"), "--framing", framing)
            assert done.returncode == 0, done.stdout + done.stderr
            out = done.stdout
            assert f"reader: Virtual PCD 00 00 ({framing} framing)" in out
            assert "chip: DESFire EV1, hardware 1.0, software 1.4, 8192 bytes, UID 04782E21801D80" in out
            assert "applications: F00101" in out and "file 1: standard data, 32 bytes, plain" in out
            assert "card data: PAN 627700******7890, expires 12/29, program 1" in out
            assert "offline value: 2500 minor units" in out and PAN not in out
            assert out.count("the derived key authenticates") == 3 and "verified:" in out
        (tmp_path / "other.key").write_text("FF" * 16)
        done = _bureau_verify("--master-key", str(tmp_path / "other.key"), "--reader", "Virtual PCD 00 00")
        assert done.returncode == 1 and "NOT VERIFIED: card master key" in done.stdout, done.stdout
        assert "verified:" not in done.stdout.replace("NOT VERIFIED", "")
    finally:
        slot.remove()


class PulledAfter(DesfireCard):
    """A card that takes the nth command `ins` and leaves the reader before it answers:
    the card did it, the host never hears."""

    def __init__(self, uid, ins, nth):
        super().__init__(uid)
        self.target, self.seen, self.pulled = ins, nth, False

    def process(self, frame):
        answer = super().process(frame)
        if not self.pulled and frame[1] == self.target:
            self.seen -= 1
            if self.seen == 0:
                self.pulled = True
                return None
        return answer


PERSONALIZATION_STEPS = [
    ("factory key authentication", desfire.AUTHENTICATE_ISO, 1),
    ("card master key changed", desfire.CHANGE_KEY, 1),
    ("card key settings", desfire.CHANGE_KEY_SETTINGS, 1),
    ("application created", desfire.CREATE_APPLICATION, 1),
    ("read key changed", desfire.CHANGE_KEY, 2),
    ("card-data file created", desfire.CREATE_STD_DATA_FILE, 1),
    ("value file created", desfire.CREATE_VALUE_FILE, 1),
    ("card data written", desfire.WRITE_DATA, 1),
    ("value credited", desfire.CREDIT, 1),
    ("credit committed", desfire.COMMIT_TRANSACTION, 1),
    ("application master key changed", desfire.CHANGE_KEY, 3),
]


@pytest.mark.parametrize("ins, nth", [step[1:] for step in PERSONALIZATION_STEPS],
                         ids=[step[0] for step in PERSONALIZATION_STEPS])
def test_a_card_pulled_at_each_personalization_step_is_finished_by_a_rerun(pcscd, ins, nth):
    from cardgate.devices import personalize as perso

    profile = _profile()
    card = PulledAfter(UID, ins, nth)
    slot, connection = insert(card, 0)
    try:
        d = desfire.Desfire(connection.transmit)
        with pytest.raises(pcsc.CardRemoved):
            perso.personalize(d, perso.card_uid(d), profile, PAN, EXPIRY, MASTER)
    finally:
        connection.close()
        slot.remove()
    assert card.pulled

    slot, connection = insert(card, 0)                     # put back: the rerun finishes it
    try:
        d = desfire.Desfire(connection.transmit)
        perso.personalize(d, perso.card_uid(d), profile, PAN, EXPIRY, MASTER)
        _read_back(desfire.Desfire(connection.transmit), "iso")
        perso.personalize(d, UID, profile, PAN, EXPIRY, MASTER)    # a third run only verifies
        with pytest.raises(desfire.DesfireError, match="differs"):
            perso.verify(d, UID, profile, "6277001234567891", EXPIRY, MASTER)
    finally:
        connection.close()
        slot.remove()
    keys = card.applications[profile.aid].keys
    assert [k.value for k in keys] == list(perso.card_keys(MASTER, UID, profile.aid))
    assert card.applications[desfire.PICC].keys[0].value == perso.card_master_key(MASTER, UID)


def test_bureau_verify_refuses_a_system_id_the_derivation_cannot_take(tmp_path):
    """M = UID (7) || AID (3) || system id || key number (1) is at most 31 bytes: a system
    id of 1 to 20 bytes; refused before any reader is touched."""
    (tmp_path / "master.key").write_text(MASTER.hex())
    for system_id in ("", "00" * 21, "XYZ"):
        done = _bureau_verify("--master-key", str(tmp_path / "master.key"), "--system-id", system_id)
        assert done.returncode == 2 and "--system-id: 1 to 20 bytes in hexadecimal" in done.stderr, \
            done.stdout + done.stderr
