"""Chip personalization of a DESFire EV1 card for a card program: one application with
two AES keys diversified per card (AN10922: key 0 the application's master key, key 1
the key a terminal reads with), a card-data file, and optionally a value file holding
an offline balance. Everything written is read back and compared.

Every step can be run again on a card it already did (a card pulled out halfway and put
back, a rerun of a bureau job): what exists is kept, a balance is topped up to the
profile's and never credited twice, and keys are changed only while they are still
the factory's zeros.

The card-data file (CARD_DATA_SIZE bytes): format version, PAN length, the PAN in BCD
(10 bytes, padded with F), expiry YYMM in BCD (2 bytes), program id (4 bytes,
little-endian), zeros.
"""
from dataclasses import dataclass

from .desfire import Desfire, DesfireError
from .diversify import diversify_aes128

CARD_DATA_FILE, VALUE_FILE = 1, 2
CARD_DATA_SIZE = 32
CARD_DATA_VERSION = 1
FACTORY_KEY = bytes(16)
READ_KEY_NO = 1
# Access nibbles (read, write, read&write, change): key 1 reads, key 0 writes and changes.
CARD_DATA_ACCESS = 0x1000
VALUE_ACCESS = 0x1000
KEY_SETTINGS = 0x0B             # master key changeable; configuration changeable; no free listing
SYSTEM_ID = b"cardgate"


@dataclass(frozen=True)
class ChipProfile:
    aid: bytes                  # 3 bytes
    program_id: int = 0
    offline_balance_minor: int = None   # None: no value file
    value_limit_minor: int = 1_000_00


def card_data(pan: str, expiry_yymm: str, program_id: int) -> bytes:
    if not (pan.isdigit() and 12 <= len(pan) <= 19):
        raise ValueError("PAN must be 12 to 19 digits")
    if not (expiry_yymm.isdigit() and len(expiry_yymm) == 4):
        raise ValueError("expiry must be YYMM")
    digits = pan + "F" * (20 - len(pan))
    record = bytes([CARD_DATA_VERSION, len(pan)]) + bytes.fromhex(digits) + \
        bytes.fromhex(expiry_yymm) + program_id.to_bytes(4, "little")
    return record + bytes(CARD_DATA_SIZE - len(record))


def parse_card_data(data: bytes) -> tuple[str, str, int]:
    if len(data) != CARD_DATA_SIZE or data[0] != CARD_DATA_VERSION:
        raise ValueError("not a card-data record of this format")
    pan = data[2:12].hex().upper()[:data[1]]
    return pan, data[12:14].hex(), int.from_bytes(data[14:18], "little")


def card_keys(master_key: bytes, uid: bytes, aid: bytes) -> tuple[bytes, bytes]:
    """(application master key, read key) of one card."""
    return tuple(diversify_aes128(master_key, uid, aid, SYSTEM_ID + bytes([n])) for n in (0, 1))


def _exists(error: DesfireError) -> bool:
    return error.status == 0xDE                 # DUPLICATE_ERROR: done before


def _create(step, resume=None) -> None:
    """Create something on the card unless a run before did (that error ends the
    session: `resume` authenticates again)."""
    try:
        step()
    except DesfireError as exc:
        if not _exists(exc):
            raise
        if resume is not None:
            resume()


def personalize(d: Desfire, uid: bytes, profile: ChipProfile, pan: str, expiry_yymm: str,
                master_key: bytes, card_master_key: bytes = FACTORY_KEY) -> None:
    """Personalize (or finish personalizing) the card, then verify it."""
    app_key, read_key = card_keys(master_key, uid, profile.aid)
    d.select_application(b"\x00\x00\x00")
    d.authenticate_aes(0, card_master_key)
    _create(lambda: d.create_application(profile.aid, KEY_SETTINGS, 2))
    def resume():
        d.select_application(profile.aid)
        d.authenticate_aes(0, FACTORY_KEY)

    d.select_application(profile.aid)
    try:
        d.authenticate_aes(0, FACTORY_KEY)
        fresh = True
    except DesfireError:
        d.select_application(profile.aid)
        d.authenticate_aes(0, app_key)           # finished before: check it, change nothing
        fresh = False
    if fresh:
        try:
            d.change_key(READ_KEY_NO, read_key, FACTORY_KEY)
        except DesfireError as exc:
            if exc.status != 0x1E:               # integrity: key 1 was changed already
                raise
            resume()
        _create(lambda: d.create_std_data_file(CARD_DATA_FILE, 0, CARD_DATA_ACCESS, CARD_DATA_SIZE),
                resume)
        if profile.offline_balance_minor is not None:
            _create(lambda: d.create_value_file(VALUE_FILE, 0, VALUE_ACCESS, 0,
                                                profile.value_limit_minor, 0), resume)
        d.write_data(CARD_DATA_FILE, 0, card_data(pan, expiry_yymm, profile.program_id))
        if profile.offline_balance_minor is not None:
            short = profile.offline_balance_minor - d.get_value(VALUE_FILE)
            if short > 0:
                d.credit(VALUE_FILE, short)
                d.commit_transaction()
        d.change_key(0, app_key)                 # last: from now on the card is this card's
    verify(d, uid, profile, pan, expiry_yymm, master_key)


def verify(d: Desfire, uid: bytes, profile: ChipProfile, pan: str, expiry_yymm: str,
           master_key: bytes) -> None:
    """Read the card back with its read key; raise DesfireError if anything differs."""
    _, read_key = card_keys(master_key, uid, profile.aid)
    d.select_application(profile.aid)
    d.authenticate_aes(READ_KEY_NO, read_key)
    found = d.read_data(CARD_DATA_FILE, 0, 0)
    if found != card_data(pan, expiry_yymm, profile.program_id):
        raise DesfireError("verify: the card-data file differs from what was written")
    if profile.offline_balance_minor is not None and \
            d.get_value(VALUE_FILE) != profile.offline_balance_minor:
        raise DesfireError("verify: the offline balance differs from the profile's")


def card_uid(d: Desfire) -> bytes:
    """The card's UID, from GetVersion (bytes 14 to 21)."""
    d.select_application(b"\x00\x00\x00")
    return d.get_version()[14:21]

