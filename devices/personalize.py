"""Chip personalization of a DESFire EV1 card for a card program, from the state the
card leaves the factory in: the card master key is the DES key of zeros (version 0),
key settings 0x0F, no application.

1. Authenticate to the card with the factory DES key (AuthenticateISO) and change the
   card master key to the card's own AES key, version 1.
2. Authenticate with it and set the card's key settings (CARD_KEY_SETTINGS).
3. Create the program's application: two AES keys (key 0 its master key, key 1 the
   key a terminal reads with), key settings APPLICATION_KEY_SETTINGS.
4. In it, with the factory key 0: change key 1 to the card's read key (version 1),
   create the card-data file and, for a program with offline value, a value file,
   write the card data, bring the value to the profile's balance, and last change key
   0 to the card's application master key (version 1).
5. Read everything back with the read key and compare (verify).

Every key is diversified per card from the bureau's master key alone (NXP AN10922,
AES-128): key = AES-CMAC(master key, 01 || M), M = UID (7 bytes) || AID (3 bytes, as
SelectApplication sends them; 000000 for the card master key) || system identifier
(SYSTEM_ID) || key number (1 byte). M is 19 bytes, so 01 || M is padded to 32 bytes
(80 00 ..) and ends with CMAC's subkey K2: any standard AES-CMAC gives the same key.
`key_derivation()` says it in the job file's chip profile.

Every step can be run again on a card it already did, whenever the card was pulled out
(even after the card took a command whose answer never came back): the card says how far
it got (key versions, key settings, applications, files), what exists is kept, a balance
is topped up to the profile's and never credited twice.

The card-data file (CARD_DATA_SIZE bytes): format version, PAN length, the PAN in BCD
(10 bytes, padded with F), expiry YYMM in BCD (2 bytes), program id (4 bytes,
little-endian), zeros.
"""
from dataclasses import dataclass

from .desfire import PICC, Desfire, DesfireError
from .desfire_crypto import AES
from .diversify import diversify_aes128

CARD_DATA_FILE, VALUE_FILE = 1, 2
CARD_DATA_SIZE = 32
CARD_DATA_VERSION = 1
FACTORY_CARD_KEY = bytes(16)            # DES, all zero
FACTORY_KEY = bytes(16)                 # a new AES application's keys
FACTORY_VERSION, KEY_VERSION = 0, 1     # of the factory's keys, of the keys personalization sets
APPLICATION_KEY_NO, READ_KEY_NO = 0, 1
APPLICATION_KEYS = 2
# Access nibbles (read, write, read&write, change): key 1 reads, key 0 writes and changes.
CARD_DATA_ACCESS = 0x1000
VALUE_ACCESS = 0x1000
# Key settings: bit 0 master key changeable, bit 1 free listing (applications; files and
# their settings), bit 2 free create / delete, bit 3 configuration changeable; an
# application's high nibble 0: its master key changes its keys.
# The card: applications listed freely, created or deleted only with the card master key.
CARD_KEY_SETTINGS = 0x0B
# The application: files listed and their settings read freely (a terminal reads them
# before the data), files created or deleted only with key 0, keys changed only with key 0.
APPLICATION_KEY_SETTINGS = 0x0B
SYSTEM_ID = b"cardgate"
SYSTEM_ID_MAX = 20              # M = 7 + 3 + system id + 1 bytes, at most 31


@dataclass(frozen=True)
class ChipProfile:
    aid: bytes                  # 3 bytes
    program_id: int = 0
    offline_balance_minor: int = None   # None: no value file
    value_limit_minor: int = 1_000_00
    system_id: bytes = SYSTEM_ID


def key_derivation() -> dict:
    """The job file's statement of how each card's keys derive from the master key (the
    chip profile's system_id beside it)."""
    return {"method": "AN10922 AES-128: key = AES-CMAC(master key, 01 || M)",
            "input": "M = UID (7 bytes) || AID (3 bytes as SelectApplication sends them; "
                     "000000 for the card master key) || system_id || key number (1 byte)",
            "keys": {"card master key": "AID 000000, key 0", "application master key": "key 0",
                     "read key": "key 1"},
            "key_version": KEY_VERSION,
            "card_key_settings": f"{CARD_KEY_SETTINGS:02X}",
            "application_key_settings": f"{APPLICATION_KEY_SETTINGS:02X}"}


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


def diversified_key(master_key: bytes, uid: bytes, aid: bytes, key_no: int,
                    system_id: bytes = SYSTEM_ID) -> bytes:
    return diversify_aes128(master_key, uid, aid, system_id + bytes([key_no]))


def card_master_key(master_key: bytes, uid: bytes, system_id: bytes = SYSTEM_ID) -> bytes:
    return diversified_key(master_key, uid, PICC, 0, system_id)


def card_keys(master_key: bytes, uid: bytes, aid: bytes, system_id: bytes = SYSTEM_ID) -> tuple[bytes, bytes]:
    """(application master key, read key) of one card."""
    return tuple(diversified_key(master_key, uid, aid, n, system_id) for n in (APPLICATION_KEY_NO, READ_KEY_NO))


def personalize(d: Desfire, uid: bytes, profile: ChipProfile, pan: str, expiry_yymm: str,
                master_key: bytes) -> None:
    """Personalize (or finish personalizing) the card, then verify it."""
    card_key = card_master_key(master_key, uid, profile.system_id)
    app_key, read_key = card_keys(master_key, uid, profile.aid, profile.system_id)
    d.select_application(PICC)
    if d.get_key_version(0) == FACTORY_VERSION:
        d.authenticate_iso(0, FACTORY_CARD_KEY)
        d.change_key(0, card_key, version=KEY_VERSION, kind=AES)     # the session ends with it
    d.authenticate_aes(0, card_key)
    if d.get_key_settings()[0] != CARD_KEY_SETTINGS:
        d.change_key_settings(CARD_KEY_SETTINGS)
    if profile.aid not in d.get_application_ids():
        d.create_application(profile.aid, APPLICATION_KEY_SETTINGS, APPLICATION_KEYS, AES)

    d.select_application(profile.aid)
    if d.get_key_version(APPLICATION_KEY_NO) == FACTORY_VERSION:     # key 0 changes last
        d.authenticate_aes(APPLICATION_KEY_NO, FACTORY_KEY)
        if d.get_key_version(READ_KEY_NO) == FACTORY_VERSION:
            d.change_key(READ_KEY_NO, read_key, FACTORY_KEY, version=KEY_VERSION)
        files = d.get_file_ids()
        if CARD_DATA_FILE not in files:
            d.create_std_data_file(CARD_DATA_FILE, 0, CARD_DATA_ACCESS, CARD_DATA_SIZE)
        if profile.offline_balance_minor is not None and VALUE_FILE not in files:
            d.create_value_file(VALUE_FILE, 0, VALUE_ACCESS, 0, profile.value_limit_minor, 0)
        d.write_data(CARD_DATA_FILE, 0, card_data(pan, expiry_yymm, profile.program_id))
        if profile.offline_balance_minor is not None:
            short = profile.offline_balance_minor - d.get_value(VALUE_FILE)
            if short > 0:
                d.credit(VALUE_FILE, short)
                d.commit_transaction()
        d.change_key(APPLICATION_KEY_NO, app_key, version=KEY_VERSION)   # from now on the card is this card's
    verify(d, uid, profile, pan, expiry_yymm, master_key)


def verify(d: Desfire, uid: bytes, profile: ChipProfile, pan: str, expiry_yymm: str,
           master_key: bytes) -> None:
    """Check the card with keys derived from the master key: the card master key and its
    settings, then the card data read with the read key; raise DesfireError if anything
    differs."""
    d.select_application(PICC)
    d.authenticate_aes(0, card_master_key(master_key, uid, profile.system_id))
    if d.get_key_settings()[0] != CARD_KEY_SETTINGS:
        raise DesfireError("verify: the card's key settings differ from the profile's")
    _, read_key = card_keys(master_key, uid, profile.aid, profile.system_id)
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
    d.select_application(PICC)
    return d.get_version()[14:21]

