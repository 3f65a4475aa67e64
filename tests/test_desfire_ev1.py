"""The simulated DESFire EV1 card, checked against what cannot be shaped to our host code:
frames recorded from a real card (the traces below), and the legacy D40 authentication
computed here from the datasheet's description with the cryptography library's DES
alone. Then framing, the factory state, key settings enforced, listings, and a
personalization from the factory state pulled out at every frame and finished by a rerun.

The traces are the frames of a DESFire EV1 8K card as published with an open-source
Python DESFire host library's tests (card answers recorded in native framing, with the
host's random numbers): the card's RndB is recovered from its first answer and fed to
the simulator, which must then answer every later frame byte for byte."""
import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from cardgate.devices import desfire, personalize as perso
from cardgate.devices.desfire import PICC, Desfire, DesfireError
from cardgate.devices.desfire_card import DesfireCard, _Application, _Key
from cardgate.devices.desfire_crypto import AES, cbc_decrypt, crc16
from cardgate.devices.vpcd import insert

H = bytes.fromhex
UID = H("04782E21801D80")
MASTER = H("00112233445566778899AABBCCDDEEFF")


def card_giving(*rnd_b_ciphertexts, key=bytes(16), kind="DES", keys=()):
    """A card whose random numbers are the RndB behind these recorded challenges (made
    with `key`, or with each of `keys`)."""
    keys = keys or [key] * len(rnd_b_ciphertexts)
    numbers = [cbc_decrypt(k, bytes(16 if kind == AES else 8), H(c), kind)
               for c, k in zip(rnd_b_ciphertexts, keys)]
    return DesfireCard(H("04063F72633480"), storage=8192, batch=H("BA4519E320"), production=(0x49, 0x13),
                       random=lambda n: numbers.pop(0))


def replay(card, exchanges):
    for sent, answered in exchanges:
        assert card.process(H(sent)).hex(" ").upper() == answered, sent


def test_a_factory_card_answers_a_recorded_des_session_byte_for_byte():
    card = card_giving("5D994CE085F24089", "8476D1CF3024B7C7")
    replay(card, [
        ("45", "00 0F 01"),                                          # factory key settings, one DES key
        ("1A 00", "AF 5D 99 4C E0 85 F2 40 89"),                     # ISO authentication, DES zeros
        ("AF 21 D0 AD 5F 2F D9 74 54 A7 46 CC 80 56 7F 1B 1C", "00 91 3C 6D ED 84 22 1C 41"),
        ("60", "AF 04 01 01 01 00 1A 05"),                           # GetVersion: three frames,
        ("AF", "AF 04 01 01 01 04 1A 05"),                           # the last with the CMAC
        ("AF", "00 04 06 3F 72 63 34 80 BA 45 19 E3 20 49 13 CD C8 10 BA FA 40 17 59"),
        ("FC", "00 9C 2C 81 3A 06 5C 45 F7"),                        # FormatPICC
        ("CA 16 DE 00 0F 02", "00 0A 13 79 B0 1D 85 AD 47"),         # 2K3DES, 3K3DES, AES, DES
        ("CA 24 DE 00 0F 42", "00 5D 73 AE 52 87 A1 BB E4"),
        ("CA 16 AE 00 0F 82", "00 3B 68 D7 2A 3B E0 D2 0C"),
        ("CA CC BB AA 0F 01", "00 F1 1A C0 73 8E F8 38 78"),
        ("6A", "00 16 DE 00 24 DE 00 16 AE 00 CC BB AA 27 39 15 4E 26 30 D6 50"),
        ("DA CC BB AA", "00 A9 AF 19 05 22 92 F6 62"),
        ("6A", "00 16 DE 00 24 DE 00 16 AE 00 52 0E 51 E0 0A F0 6D 5E"),
        ("5A 16 DE 00", "00"),
        ("1A 00", "AF 84 76 D1 CF 30 24 B7 C7"),
        ("AF DA C6 7A B7 43 76 3D C9 FA F8 A0 AE 50 4E 80 C5", "00 13 E9 E4 FA 43 88 BF 16"),
        ("45", "00 0F 02 25 DD 8D 77 31 B1 CF D5"),
        ("54 27 88 28 05 FC 3F D4 9D", "00 A6 28 37 83 74 27 0A CD"),  # ChangeKeySettings, enciphered
        ("45", "00 0D 02 61 3F B2 D3 F4 53 D2 E4"),
    ])
    assert card.applications[H("16DE00")].key_settings == 0x0D


def test_a_recorded_2k3des_key_change_session_byte_for_byte():
    first, second = H("00102031405060708090A0B0B0A09080"), H("10182029303840485058606870788088")
    card = card_giving("DE50F92310CAF5A5", "B295579926155AE3", "9414819CC8BB62C3",
                       keys=[bytes(16), first, second])
    card.applications[H("16DE00")] = _Application(0x0F, [_Key("DES/2K3DES", bytes(16)) for _ in range(2)])
    replay(card, [
        ("5A 16 DE 00", "00"),
        ("1A 00", "AF DE 50 F9 23 10 CA F5 A5"),
        ("AF E0 06 16 66 87 04 D5 54 9C 8D 6A 13 A0 F8 FC ED", "00 1D 9D 29 54 69 7D E7 60"),
        ("C4 00 BE DE 0F C6 ED 34 7D CF 0D 51 C7 17 DF 75 D9 7D 2C 5A 2B A6 CA C7 47 9D", "00"),
        ("1A 00", "AF B2 95 57 99 26 15 5A E3"),                     # the new 2K3DES key
        ("AF 70 F3 49 74 0C 94 5D AE 15 9B A9 FE DB CC 46 1A", "00 B8 FD 7F E5 6B 24 1F C4"),
        ("C4 00 94 E4 F7 09 DC 2A 2B 07 55 26 10 A1 96 6E 5C 49 EC 90 F6 16 ED EC A5 5B", "00"),
        ("1A 00", "AF 94 14 81 9C C8 BB 62 C3"),
        ("AF 93 7E 6B 18 54 A6 D9 2E 0F D9 75 D9 90 90 01 E8", "00 E0 55 D1 1D D9 53 50 60"),
        ("64 00", "00 10 33 45 AA 95 F2 D9 56 CF"),                  # the version, in the parity bits
    ])
    assert card.applications[H("16DE00")].keys[0].value == second


def test_a_recorded_aes_session_with_a_file_byte_for_byte():
    key = H("10182028303840485058606870788088")
    card = card_giving("B351CB2465D4F33AC627FD6E87A168F2", key=key, kind=AES)
    card.applications[H("16AE00")] = _Application(0x0F, [_Key(AES, key)])
    data = " ".join(f"{i:02X}" for i in range(80))
    replay(card, [
        ("5A 16 AE 00", "00"),
        ("45", "00 0F 81"),
        ("AA 00", "AF B3 51 CB 24 65 D4 F3 3A C6 27 FD 6E 87 A1 68 F2"),
        ("AF 04 4B 6C AC 34 3A 08 65 89 51 49 64 9C A8 DD E1 F5 AC 4E C6 7B D2 08 90 0A F0 2F 04 9E 05 F0 B0",
         "00 A2 EE 14 4B 10 12 FB EB 7B 2F 11 13 2D 95 A4 54"),
        ("CD 05 00 11 00 50 00 00", "00 A7 53 16 AD 15 96 B9 53"),
        ("6F", "00 05 2D 5F F6 7F FE C9 D2 D3"),
        ("F5 05", "00 00 00 11 00 50 00 00 2A AC 75 17 02 4E 09 DC"),
        ("3D 05 00 00 00 34 00 00 " + data[:0x34 * 3 - 1], "00 76 5C 9D AA 50 EC B6 2F"),
        ("3D 05 34 00 00 1C 00 00 " + data[0x34 * 3:], "00 3E 0A ED 98 6B 8B 0F 37"),
        ("BD 05 00 00 00 30 00 00", "00 " + data[:0x30 * 3 - 1] + " 4C 65 F1 F8 42 26 2B AC"),
        ("BD 05 30 00 00 20 00 00", "00 " + data[0x30 * 3:] + " F0 22 05 CF 91 3C 03 C9"),
        ("DF 05", "00 1B EF 0D 32 B6 D1 D7 F9"),
    ])


@pytest.fixture(params=["in process", "through pcscd"])
def card_link(request):
    """(card, transmit): a factory-fresh simulated card, spoken to directly or through the
    real pcscd and vpcd's reader."""
    card = DesfireCard(UID)
    if request.param == "in process":
        yield card, card.process
        return
    request.getfixturevalue("pcscd")
    slot, connection = insert(card, 0)
    try:
        yield card, connection.transmit
    finally:
        connection.close()
        slot.remove()


def _des(key8, block, decrypt=False):
    cipher = Cipher(TripleDES(key8 * 3), modes.ECB())
    return (cipher.decryptor() if decrypt else cipher.encryptor()).update(block)


def test_legacy_authentication_and_key_change_as_the_d40_datasheet_describes(card_link):
    """The host's side written here from the D40 description with plain DES: the card
    sends E(RndB); the host sends D(RndA) and D(RndB' xor D(RndA)); the card answers
    E(RndA'). ChangeKey after it: D40 send mode with CRC16."""
    rnd_b = H("1122334455667788")
    card, transmit = card_link
    card.random = lambda n: rnd_b
    zero = bytes(8)
    answer = transmit(H("0A00"))
    assert answer[0] == 0xAF and _des(zero, answer[1:], decrypt=True) == rnd_b
    rnd_a = H("A0A1A2A3A4A5A6A7")
    d1 = _des(zero, rnd_a, decrypt=True)
    d2 = _des(zero, bytes(x ^ y for x, y in zip(rnd_b[1:] + rnd_b[:1], d1)), decrypt=True)
    answer = transmit(b"\xAF" + d1 + d2)
    assert answer[0] == 0x00 and _des(zero, answer[1:], decrypt=True) == rnd_a[1:] + rnd_a[:1]
    session = rnd_a[:4] + rnd_b[:4]
    assert transmit(H("6400")) == H("0000")              # key 0's version: plain, no MAC after D40
    # Change the card master key to a DES key (version 0) in D40 send mode.
    new_key = H("0102030405060708") * 2
    plain = new_key + crc16(new_key) + bytes(6)
    crypto, previous = b"", bytes(8)
    for i in range(0, len(plain), 8):
        previous = _des(session, bytes(x ^ y for x, y in zip(plain[i:i + 8], previous)), decrypt=True)
        crypto += previous
    assert transmit(b"\xC4\x00" + crypto) == H("00")
    assert card.applications[PICC].keys[0].value == new_key
    assert crc16(b"123456789") == (0xBF05).to_bytes(2, "little")   # CRC-16/ISO-IEC-14443-3-A check value
    # Our host, too, takes the new key with a legacy and with an ISO authentication.
    host = Desfire(transmit)
    host.authenticate_legacy(0, new_key)
    assert host.get_key_settings() == (0x0F, 1, "DES/2K3DES")       # plain, no MAC
    host.authenticate_iso(0, new_key)
    assert host.get_key_version(0) == 0xAA                     # its version: the parity bits 1010 1010

    def corrupting(frame):                                     # one bit of ChangeKey's cryptogram flipped
        return transmit(frame[:-1] + bytes([frame[-1] ^ 1]) if frame[0] == desfire.CHANGE_KEY else frame)
    for authenticate in ("authenticate_legacy", "authenticate_iso"):
        bad = Desfire(corrupting, native=True)
        getattr(bad, authenticate)(0, new_key)
        with pytest.raises(DesfireError, match="INTEGRITY_ERROR"):
            bad.change_key(0, bytes(16), kind="DES")           # its CRC16 / CRC32 no longer holds
        assert card.applications[PICC].keys[0].value == new_key


@pytest.mark.parametrize("native", [False, True], ids=["iso", "native"])
def test_framing_factory_state_and_the_wrong_authentication_for_a_key(card_link, native):
    _, transmit = card_link
    assert transmit(H("60"))[0] == 0xAF and transmit(H("9060000000"))[-2:] == H("91AF")
    assert transmit(H("9060000100")) == H("6A86")              # P1 P2 not zero
    assert transmit(H("905A00000501")) == H("6700")            # lengths that do not add up
    assert transmit(H("00A4040000")) == H("6E00")              # ISO 7816-4's own commands
    assert transmit(H("EE")) == H("1C")                        # no such native command
    d = Desfire(transmit, native=native)
    version = d.get_version()
    assert version[:14] == H("04010101001A05" "04010101041A05") and version[14:21] == UID
    assert int(f"{version[26]:x}") <= 53 and all(b >> 4 < 10 and b & 15 < 10 for b in version[26:28])
    assert (d.get_key_settings(), d.get_key_version(0), d.get_application_ids()) == ((0x0F, 1, "DES/2K3DES"), 0, [])
    with pytest.raises(DesfireError, match="AUTHENTICATION_ERROR"):
        d.authenticate_aes(0, bytes(16))                       # the factory key is DES
    d.authenticate_legacy(0, bytes(16))
    d.authenticate_iso(0, bytes(16))
    d.create_application(H("A00001"), 0x0F, 3, AES)
    d.create_application(H("A00002"), 0x0F, 2, "3K3DES")
    d.create_application(H("A00003"), 0x0F, 1, "DES")
    assert d.get_application_ids() == [H("A00001"), H("A00002"), H("A00003")]
    d.select_application(H("A00002"))
    assert d.get_key_settings() == (0x0F, 2, "3K3DES")
    d.authenticate_iso(1, bytes(24))
    d.select_application(H("A00003"))
    with pytest.raises(DesfireError, match="AUTHENTICATION_ERROR"):
        d.authenticate_aes(0, bytes(16))
    d.authenticate_legacy(0, bytes(16))
    two_key = H("00112233445566778899AABBCCDDEEFF")
    d.change_key(0, two_key, version=0x21, kind="2K3DES")     # D40 ChangeKey, CRC16
    d.authenticate_legacy(0, two_key)                          # a 2K3DES key, both ways
    d.authenticate_iso(0, two_key)
    assert d.get_key_version(0) == 0x21                        # MACed with a 2K3DES session key
    d.change_key(0, bytes(16), version=0, kind="DES")          # EV1 ChangeKey, CRC32
    d.authenticate_iso(0, bytes(16))
    d.select_application(H("A00001"))
    with pytest.raises(DesfireError, match="AUTHENTICATION_ERROR"):
        d.authenticate_legacy(0, bytes(16))                    # an AES key
    d.authenticate_aes(2, bytes(16))
    d.select_application(PICC)
    with pytest.raises(DesfireError, match="AUTHENTICATION_ERROR"):
        d.delete_application(H("A00003"))                      # free create (0F) does not free deletion
    with pytest.raises(DesfireError, match="AUTHENTICATION_ERROR"):
        d.format_picc()
    d.select_application(H("A00002"))
    d.authenticate_iso(0, bytes(24))
    d.delete_application(H("A00002"))                          # by its own master key
    d.select_application(PICC)
    assert d.get_application_ids() == [H("A00001"), H("A00003")]
    d.authenticate_iso(0, bytes(16))
    d.format_picc()
    assert d.get_application_ids() == []


def test_key_settings_are_enforced(card_link):
    d = Desfire(card_link[1])
    d.authenticate_iso(0, bytes(16))
    d.create_application(H("A00001"), 0xE8, 3, AES)            # no free listing or create; keys change themselves
    d.change_key_settings(0x08)                                # card: no free listing, no free create, master frozen
    d.select_application(PICC)
    with pytest.raises(DesfireError, match="AUTHENTICATION_ERROR"):
        d.get_application_ids()
    with pytest.raises(DesfireError, match="AUTHENTICATION_ERROR"):
        d.create_application(H("A00002"), 0x0F, 1, AES)
    d.authenticate_iso(0, bytes(16))
    assert d.get_application_ids() == [H("A00001")]
    with pytest.raises(DesfireError, match="PERMISSION_DENIED"):
        d.change_key(0, bytes(16), version=1, kind=AES)        # the card master key is frozen
    d.authenticate_iso(0, bytes(16))
    d.change_key_settings(0x00)                                # and now the configuration too
    with pytest.raises(DesfireError, match="PERMISSION_DENIED"):
        d.change_key_settings(0x0F)
    d.select_application(H("A00001"))
    with pytest.raises(DesfireError, match="AUTHENTICATION_ERROR"):
        d.get_file_ids()                                       # no free listing in the application
    with pytest.raises(DesfireError, match="AUTHENTICATION_ERROR"):
        d.get_key_settings()
    d.authenticate_aes(2, bytes(16))
    with pytest.raises(DesfireError, match="PERMISSION_DENIED"):
        d.change_key(1, H("11") * 16, bytes(16), version=1)    # rule E: each key changes only itself
    d.authenticate_aes(1, bytes(16))
    d.change_key(1, H("11") * 16, version=1)
    assert [d.get_key_version(n) for n in range(3)] == [0, 1, 0]
    d.authenticate_aes(1, H("11") * 16)
    with pytest.raises(DesfireError, match="AUTHENTICATION_ERROR"):
        d.create_std_data_file(1, 0, 0xEEEE, 8)                # key 1 is not the application's master key
    d.authenticate_aes(0, bytes(16))
    d.change_key_settings(0xFB)                                # keys frozen, listing free, create needs key 0
    d.create_std_data_file(1, 0, 0x1000, 8)
    d.create_value_file(2, 0, 0x1000, -5, 500, 7, limited_credit=True)
    assert d.get_file_ids() == [1, 2]
    d.authenticate_aes(1, H("11") * 16)
    with pytest.raises(DesfireError, match="PERMISSION_DENIED"):
        d.change_key(1, H("22") * 16, version=2)
    d.select_application(H("A00001"))                          # free listing now, no authentication
    assert d.get_file_settings(1) == desfire.FileSettings(0, 0, 0x1000, size=8)
    assert d.get_file_settings(2) == desfire.FileSettings(2, 0, 0x1000, lower=-5, upper=500,
                                                          limited_credit=True)
    assert d.get_key_settings() == (0xFB, 3, AES)


PROFILE = perso.ChipProfile(aid=H("F00101"), program_id=7, offline_balance_minor=25_00)
PAN, EXPIRY = "6277001234567890", "2912"


def assert_personalized(card):
    picc, app = card.applications[PICC], card.applications[PROFILE.aid]
    assert (picc.keys[0].kind, picc.keys[0].value, picc.keys[0].version) == \
        (AES, perso.card_master_key(MASTER, UID), 1)
    assert picc.key_settings == perso.CARD_KEY_SETTINGS == 0x0B
    assert [(k.kind, k.value, k.version) for k in app.keys] == \
        [(AES, key, 1) for key in perso.card_keys(MASTER, UID, PROFILE.aid)]
    assert app.key_settings == perso.APPLICATION_KEY_SETTINGS
    assert sorted(app.files) == [1, 2]
    assert perso.parse_card_data(bytes(app.files[1].data)) == (PAN, EXPIRY, 7)
    assert app.files[2].value == 25_00                         # credited once, whatever happened


class Pulled(Exception):
    pass


def test_a_card_pulled_at_every_frame_of_its_personalization_is_finished_by_a_rerun():
    """Before the card took the frame, and after it took it but before its answer came
    back: for each frame of a whole personalization, the card pulled there (power lost)
    and put back, and the rerun finishes it."""
    clean = DesfireCard(UID)
    frames = []

    def counting(frame):
        frames.append(frame)
        return clean.process(frame)
    d = Desfire(counting)
    perso.personalize(d, perso.card_uid(d), PROFILE, PAN, EXPIRY, MASTER)
    assert_personalized(clean)
    total = len(frames)
    assert total > 30
    for at in range(total):
        for taken in (False, True):
            card, sent = DesfireCard(UID), []

            def pulling(frame):
                sent.append(frame)
                if len(sent) - 1 == at:
                    if taken:
                        card.process(frame)
                    card.power(False)
                    raise Pulled
                return card.process(frame)
            with pytest.raises(Pulled):
                d = Desfire(pulling)
                perso.personalize(d, perso.card_uid(d), PROFILE, PAN, EXPIRY, MASTER)
            card.power(True)
            d = Desfire(card.process)
            perso.personalize(d, perso.card_uid(d), PROFILE, PAN, EXPIRY, MASTER)
            assert_personalized(card)


def test_the_readmes_worked_key_derivation_is_what_any_aes_cmac_gives():
    """The README's example, derived by personalize and by the cryptography library's own
    AES-CMAC over 01 || UID || AID || system id || key number: a terminal of another vendor
    needs nothing else."""
    import pathlib
    import re

    from cryptography.hazmat.primitives.ciphers import algorithms
    from cryptography.hazmat.primitives.cmac import CMAC

    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    documented = dict(re.findall(r"^ {4}(card master key|application master key|read key) +([0-9A-F]{32})$",
                                 readme, re.M))
    assert len(documented) == 3

    def standard(aid, key_no):
        mac = CMAC(algorithms.AES(MASTER))
        mac.update(b"\x01" + UID + aid + bytes.fromhex("6361726467617465") + bytes([key_no]))
        return mac.finalize()
    aid = H("F00101")
    app_key, read_key = perso.card_keys(MASTER, UID, aid)
    assert documented == {"card master key": perso.card_master_key(MASTER, UID).hex().upper(),
                          "application master key": app_key.hex().upper(), "read key": read_key.hex().upper()}
    assert (perso.card_master_key(MASTER, UID), app_key, read_key) == \
        (standard(PICC, 0), standard(aid, 0), standard(aid, 1))


@pytest.mark.parametrize("length", [0, 1, 45, 46, 97, 98, 8 * 1024 - 1, 8 * 1024])
def test_writes_at_the_frame_edges_and_the_file_size_read_back(length):
    """A command frame carries 52 data bytes: WriteData's 7-byte header and 45 bytes fit
    one frame, 46 need a second; the card asks for the rest with AF; a file of 8 KiB, the
    most the card takes, is written and read whole in an AES session (MACs over all)."""
    card, sent = DesfireCard(UID), []

    def counting(frame):
        sent.append(frame)
        return card.process(frame)
    d = Desfire(counting)
    d.authenticate_iso(0, bytes(16))
    d.create_application(H("A00001"), 0x0F, 1, AES)
    d.select_application(H("A00001"))
    d.authenticate_aes(0, bytes(16))
    d.create_std_data_file(1, 0, 0x0000, 8 * 1024)
    with pytest.raises(DesfireError, match="OUT_OF_EEPROM"):
        d.create_std_data_file(2, 0, 0x0000, 8 * 1024 + 1)
    d.authenticate_aes(0, bytes(16))
    data = bytes(i % 251 for i in range(length))
    before = len(sent)
    d.write_data(1, 8 * 1024 - length, data)
    assert len(sent) - before == max(1, -(-(7 + length) // desfire.COMMAND_FRAME_MAX))
    if length:                                                 # (a length of 0 reads the whole file)
        assert d.read_data(1, 8 * 1024 - length, length) == data
    assert bytes(card.applications[H("A00001")].files[1].data[8 * 1024 - length:]) == data
    with pytest.raises(DesfireError, match="BOUNDARY_ERROR"):
        d.write_data(1, 8 * 1024 - length + 1, data or b"x")      # one byte past the end
