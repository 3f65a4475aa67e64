"""ISO/IEC 7813 magnetic stripe tracks 1 and 2: building, parsing, and their LRC.

Track 1 (IATA, 6-bit alphanumeric, characters 0x20-0x5F), at most 79 characters from
the start sentinel to the end sentinel:
    %B<PAN>^<NAME>^<YYMM><service code><discretionary>?
Track 2 (ABA, 4-bit numeric, characters 0x30-0x3F), at most 40 characters:
    ;<PAN>=<YYMM><service code><discretionary>?
The LRC follows the end sentinel: the exclusive-or of every character's data bits
(sentinels included), with the track's character offset (0x20 or 0x30) taken off.
Examples: "%ABC123?" has LRC 0x2A; ";12345?" has data bits 0x5.
"""
from dataclasses import dataclass

TRACK1_MAX = 79
TRACK2_MAX = 40
NAME_MAX = 26
DISCRETIONARY_MAX_1 = 79
PAN_MIN, PAN_MAX = 12, 19


def expiry_yymm(expiry_yyyymm: int) -> str:
    """A card's last month (YYYYMM, as cardgate keeps it) as the tracks write it: YYMM."""
    return f"{expiry_yyyymm // 100 % 100:02d}{expiry_yyyymm % 100:02d}"


class TrackError(ValueError):
    """A track that cannot be built or read: which track and what is wrong."""


@dataclass(frozen=True)
class _Charset:
    name: str
    offset: int           # ASCII of data value 0
    bits: int             # data bits per character
    start: str
    end: str
    limit: int

    def values(self, text: str) -> list[int]:
        out = []
        for i, ch in enumerate(text):
            value = ord(ch) - self.offset
            if not 0 <= value < (1 << self.bits):
                raise TrackError(f"{self.name}: {ch!r} at {i} is outside its character set "
                                 f"({chr(self.offset)!r} to {chr(self.offset + (1 << self.bits) - 1)!r})")
            out.append(value)
        return out


TRACK1 = _Charset("track 1", 0x20, 6, "%", "?", TRACK1_MAX)
TRACK2 = _Charset("track 2", 0x30, 4, ";", "?", TRACK2_MAX)


def lrc(track: str, charset: _Charset = None) -> int:
    """The LRC data bits of a whole track string (start sentinel to end sentinel)."""
    charset = charset or (TRACK1 if track.startswith("%") else TRACK2)
    value = 0
    for v in charset.values(track):
        value ^= v
    return value


def lrc_char(track: str) -> str:
    charset = TRACK1 if track.startswith("%") else TRACK2
    return chr(charset.offset + lrc(track, charset))


def _check_common(pan: str, yymm: str, service_code: str):
    if not (pan.isdigit() and PAN_MIN <= len(pan) <= PAN_MAX):
        raise TrackError(f"PAN must be {PAN_MIN} to {PAN_MAX} digits")
    if not (len(yymm) == 4 and yymm.isdigit() and 1 <= int(yymm[2:]) <= 12):
        raise TrackError(f"expiry must be YYMM, got {yymm!r}")
    if not (len(service_code) == 3 and service_code.isdigit()):
        raise TrackError(f"service code must be 3 digits, got {service_code!r}")


def _finish(charset: _Charset, body: str) -> str:
    track = charset.start + body + charset.end
    if len(track) > charset.limit:
        raise TrackError(f"{charset.name}: {len(track)} characters, at most {charset.limit}")
    charset.values(track)
    return track


def build_track1(pan: str, name: str, yymm: str, service_code: str, discretionary: str = "") -> str:
    """'%B<PAN>^<NAME>^<YYMM><SVC><DD>?' (without its LRC)."""
    _check_common(pan, yymm, service_code)
    if not 2 <= len(name) <= NAME_MAX or "^" in name or "%" in name or "?" in name:
        raise TrackError(f"track 1: the name must be 2 to {NAME_MAX} characters without ^ % ?")
    if name != name.upper():
        raise TrackError("track 1: the name must be in capitals (the set has no small letters)")
    if any(c in discretionary for c in "^%?"):
        raise TrackError("track 1: discretionary data may not hold ^ % ?")
    return _finish(TRACK1, f"B{pan}^{name}^{yymm}{service_code}{discretionary}")


def build_track2(pan: str, yymm: str, service_code: str, discretionary: str = "") -> str:
    """';<PAN>=<YYMM><SVC><DD>?' (without its LRC)."""
    _check_common(pan, yymm, service_code)
    if not discretionary.isdigit() and discretionary:
        raise TrackError("track 2: discretionary data must be digits")
    return _finish(TRACK2, f"{pan}={yymm}{service_code}{discretionary}")


@dataclass(frozen=True)
class TrackData:
    pan: str
    yymm: str
    service_code: str
    discretionary: str
    name: str = ""


def _split_tail(charset, tail: str) -> tuple[str, str, str]:
    if len(tail) < 7 or not tail[:7].isdigit():
        raise TrackError(f"{charset.name}: expiry and service code must follow the PAN")
    return tail[:4], tail[4:7], tail[7:]


def parse_track1(track: str) -> TrackData:
    if not (track.startswith("%B") and track.endswith("?")):
        raise TrackError("track 1 must start with %B and end with ?")
    if len(track) > TRACK1_MAX:
        raise TrackError(f"track 1: {len(track)} characters, at most {TRACK1_MAX}")
    TRACK1.values(track)
    parts = track[2:-1].split("^")
    if len(parts) != 3:
        raise TrackError("track 1 must hold PAN ^ NAME ^ data")
    pan, name, tail = parts
    yymm, service_code, discretionary = _split_tail(TRACK1, tail)
    _check_common(pan, yymm, service_code)
    return TrackData(pan, yymm, service_code, discretionary, name)


def parse_track2(track: str) -> TrackData:
    if not (track.startswith(";") and track.endswith("?")):
        raise TrackError("track 2 must start with ; and end with ?")
    if len(track) > TRACK2_MAX:
        raise TrackError(f"track 2: {len(track)} characters, at most {TRACK2_MAX}")
    TRACK2.values(track)
    pan, sep, tail = track[1:-1].partition("=")
    if not sep:
        raise TrackError("track 2 must hold PAN = data")
    yymm, service_code, discretionary = _split_tail(TRACK2, tail)
    _check_common(pan, yymm, service_code)
    return TrackData(pan, yymm, service_code, discretionary)
