"""Checks of client input. Each failure names the field and what is wrong with it."""
import calendar
import datetime
import re
import uuid

from cardgate.fastcore import records
from cardgate.gateway import money
from cardgate.gateway.security import pan as pan_mod

_UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class InvalidArgument(ValueError):
    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


def is_uuid_text(text: str) -> bool:
    return bool(_UUID_TEXT.match(text.lower()))


def request_id(text: str, field: str = "request_id") -> bytes:
    if not text:
        raise InvalidArgument(field, "is missing; send a new UUID per request and reuse it on retries")
    if not is_uuid_text(text):
        # Never quoted: a client may put anything there, a card number too.
        raise InvalidArgument(field, f"is not a UUID like '123e4567-e89b-42d3-a456-426614174000' "
                              f"(got {len(text)} characters)")
    return uuid.UUID(text).bytes


def currency(code: str, field: str = "currency") -> str:
    try:
        return money.check_currency(code)
    except money.AmountError as exc:
        raise InvalidArgument(field, str(exc)) from None


def amount_minor(value: int, field: str = "amount.amount_minor", allow_zero: bool = False) -> int:
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidArgument(field, f"must be {'zero or more' if allow_zero else 'positive'}, "
                              f"got {value}")
    if value > records.AMOUNT_MINOR_MAX:
        raise InvalidArgument(field, f"{value} is above the limit of {records.AMOUNT_MINOR_MAX}")
    return value


def pan(text: str, field: str = "pan") -> str:
    if not text:
        raise InvalidArgument(field, "is missing")
    try:
        return pan_mod.check_pan(text)
    except pan_mod.PanError as exc:
        raise InvalidArgument(field, str(exc)) from None


HOLDER_NAME_MIN, HOLDER_NAME_MAX = 2, 26          # ISO 7813 track 1's name field
_HOLDER_NAME = re.compile(r"^[A-Z0-9 .'/-]+$")


def holder_name(text: str, field: str = "holder_name") -> str:
    """A card holder's name as embossed and on track 1: capitals, single spaces."""
    name = " ".join((text or "").split()).upper()
    if not HOLDER_NAME_MIN <= len(name) <= HOLDER_NAME_MAX:
        raise InvalidArgument(field, f"must be {HOLDER_NAME_MIN} to {HOLDER_NAME_MAX} characters, "
                              f"got {len(name)}")
    if not _HOLDER_NAME.match(name):
        bad = sorted({c for c in name if not _HOLDER_NAME.match(c)})
        raise InvalidArgument(field, f"may hold only A-Z, digits, space, '.', '-', '/' and an "
                              f"apostrophe (track 1 and embossing have no others), not {''.join(bad)!r}")
    return name


def yyyymm(value: int, field: str) -> int:
    year, month = divmod(value, 100)
    if not (2000 <= year <= 2099 and 1 <= month <= 12):
        raise InvalidArgument(field, f"{value} is not a month written YYYYMM, e.g. 202812")
    return value


def pin(text: str, field: str = "pin") -> str:
    # Never echo the value: a PIN must not reach an error message or a log.
    if not (text.isascii() and text.isdigit() and 4 <= len(text) <= 12):
        raise InvalidArgument(field, "must be 4 to 12 digits")
    return text


def config_id(value: int, field: str) -> int:
    """An operator-chosen 32-bit id (card range, profile, contract, program); 0 is none."""
    if not 1 <= value <= 0xFFFF_FFFF:
        raise InvalidArgument(field, f"must be 1 to 4294967295, got {value}")
    return value


def utc_offset_min(value: int, field: str = "utc_offset_min") -> int:
    if not -1440 <= value <= 1440:
        raise InvalidArgument(field, f"must be -1440 to 1440, got {value}")
    return value


_APPROVAL_CODE = re.compile(r"^[0-9A-Za-z]{1,6}$")
_LOCAL_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$")


def local_time_s(text: str, field: str) -> int:
    """"YYYY-MM-DDThh:mm:ss" (a wall clock, no zone) as seconds from 1970-01-01T00:00 of
    the same wall clock: the core makes it UTC with the card range's zone."""
    found = _LOCAL_TIME.match(text)
    try:
        if not found:
            raise ValueError
        when = datetime.datetime(*(int(part) for part in found.groups()))
    except ValueError:
        raise InvalidArgument(field, "must be a local date and time YYYY-MM-DDThh:mm:ss "
                                     "from 2000 on") from None
    if when.year < 2000:
        raise InvalidArgument(field, "must be a local date and time YYYY-MM-DDThh:mm:ss "
                                     "from 2000 on")
    return calendar.timegm(when.timetuple())


def offline_approval(m, field: str = "offline") -> dict:
    """pack_request keywords of a sale approved offline (cardgate.v1.OfflineApproval)."""
    if not _APPROVAL_CODE.match(m.approval_code):
        raise InvalidArgument(f"{field}.approval_code", "must be 1 to 6 letters or digits")
    return dict(offline_approval_code=m.approval_code,
                offline_local_s=local_time_s(m.approved_local, f"{field}.approved_local"))
