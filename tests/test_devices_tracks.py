"""Card numbers and magnetic stripe tracks: Luhn, ISO 7813 tracks 1 and 2, their LRC,
and AN10922 key diversification of DESFire cards."""
import pytest

from cardgate.devices.diversify import diversify_aes128
from cardgate.devices.tracks import (TRACK1_MAX, TRACK2_MAX, TrackError, build_track1, build_track2,
                                     lrc, lrc_char, parse_track1, parse_track2)
from cardgate.gateway.security.pan import luhn_check_digit, luhn_valid

PAN = "6277001234567890"


@pytest.mark.parametrize("pan, valid", [("79927398713", True), ("79927398710", False),
                                        ("4111111111111111", True), ("4111111111111112", False),
                                        (PAN, True), ("0", False), ("12a4", False)])
def test_luhn(pan, valid):
    assert luhn_valid(pan) is valid


def test_luhn_check_digit_makes_any_payload_valid():
    for payload in ("627700", "7992739871", "6277001234567"):
        assert luhn_valid(payload + str(luhn_check_digit(payload)))


def test_lrc_of_the_published_examples():
    assert lrc("%ABC123?") == 0x2A
    assert lrc(";12345?") == 0x5
    assert lrc_char(";12345?") == "5" and lrc_char("%ABC123?") == "J"


def test_tracks_are_built_and_read_back():
    track1 = build_track1(PAN, "DOE/JANE", "2912", "120", "0000")
    track2 = build_track2(PAN, "2912", "120", "0000")
    assert track1 == f"%B{PAN}^DOE/JANE^29121200000?"
    assert track2 == f";{PAN}=29121200000?"
    one, two = parse_track1(track1), parse_track2(track2)
    assert (one.pan, one.name, one.yymm, one.service_code, one.discretionary) == \
        (PAN, "DOE/JANE", "2912", "120", "0000")
    assert (two.pan, two.yymm, two.service_code, two.discretionary) == (PAN, "2912", "120", "0000")


@pytest.mark.parametrize("build, message", [
    (lambda: build_track1(PAN, "doe/jane", "2912", "120"), "capitals"),
    (lambda: build_track1(PAN, "DOE^JANE", "2912", "120"), "name"),
    (lambda: build_track1(PAN, "DOE/JANE", "2913", "120"), "YYMM"),
    (lambda: build_track1(PAN, "DOE/JANE", "2912", "12"), "service code"),
    (lambda: build_track1(PAN, "DOE/JANE", "2912", "120", "X" * 60), "at most 79"),
    (lambda: build_track1(PAN, "DOE/JANÉ", "2912", "120"), "outside its character set"),
    (lambda: build_track1(PAN, "DOE/JANE", "2912", "120", "{}"), "outside its character set"),
    (lambda: build_track2(PAN, "2912", "120", "12A"), "digits"),
    (lambda: build_track2(PAN, "2912", "120", "9" * 20), "at most 40"),
    (lambda: build_track2("1234", "2912", "120"), "PAN"),
])
def test_bad_track_data_is_refused_with_what_is_wrong(build, message):
    with pytest.raises(TrackError, match=message):
        build()


@pytest.mark.parametrize("parse, track, message", [
    (parse_track1, ";1234?", "start with %B"),
    (parse_track1, "%B" + PAN + "^DOE^2912120" + "0" * 70 + "?", "at most 79"),
    (parse_track1, "%B" + PAN + "^DOE|^2912120?", "outside its character set"),
    (parse_track1, "%B" + PAN + "^DOE?", "must hold PAN"),
    (parse_track2, ";" + PAN + "=2912120" + "0" * 20 + "?", "at most 40"),
    (parse_track2, ";" + PAN + "=29121A0?", "outside its character set"),
    (parse_track2, ";" + PAN + "?", "PAN = data"),
])
def test_bad_tracks_are_refused_when_read(parse, track, message):
    with pytest.raises(TrackError, match=message):
        parse(track)


def test_track_limits_are_the_standards():
    assert (TRACK1_MAX, TRACK2_MAX) == (79, 40)


def test_an10922_aes128_diversification_published_vector():
    key = diversify_aes128(bytes.fromhex("00112233445566778899AABBCCDDEEFF"),
                           bytes.fromhex("04782E21801D80"), bytes.fromhex("3042F5"), b"NXP Abu")
    assert key.hex().upper() == "A8DD63A3B89D54B37CA802473FDA9175"


def test_diversification_differs_per_card_and_refuses_bad_input():
    master = bytes(range(16))
    assert diversify_aes128(master, b"\x04" * 7, b"\x01\x02\x03", b"") != \
        diversify_aes128(master, b"\x05" * 7, b"\x01\x02\x03", b"")
    long_input = diversify_aes128(master, b"\x04" * 7, b"\x01\x02\x03", b"S" * 21)  # 31: no padding
    assert len(long_input) == 16
    with pytest.raises(ValueError):
        diversify_aes128(master, b"\x04" * 7, b"\x01\x02\x03", b"S" * 22)
    with pytest.raises(ValueError):
        diversify_aes128(master[:8], b"\x04" * 7, b"\x01\x02\x03", b"")
