"""MIFARE DESFire EV1 native commands, the host's side, in either framing:

* ISO 7816-4 wrapped (the default): `90 INS 00 00 Lc data 00`, answered `data 91 SW2`;
* native: `INS data`, answered `SW data`, as a reader that passes frames through sends
  them.

SW is the DESFire status. Status AF means more follows: the card's answer continues
when the host sends AF, and a command too long for one frame goes on in AF frames the
card asks for with AF. Any other status than 00 is an error, raised as DesfireError
naming it; an error ends an authentication, as on the card.

Authentication: legacy (0x0A, DES and 2K3DES keys, D40 secure messaging), ISO (0x1A, DES
kinds) and AES (0xAA). After an ISO or AES authentication every command and answer
moves the session IV on: the host MACs each command (not sent: plain communication)
and checks the 8-byte CMAC the card appends to each answer; ChangeKey and
ChangeKeySettings travel enciphered (desfire_crypto has the arithmetic).

`transmit` is any callable that sends a frame and returns the card's answer (a PC/SC
connection's, or a simulated card's)."""
import os
from dataclasses import dataclass

from .desfire_crypto import (AES, DES_BLOCK, KEY_LENGTHS, TDES3, block_of, cbc_decrypt,
                             cbc_encrypt, cmac, crc16, crc32, des_kind, legacy_send,
                             pad_zeros, random_length, rotate_left, session_key,
                             with_des_version, xor)
WRAP_CLA = 0x90
ADDITIONAL_FRAME = 0xAF
OK = 0x00

STATUS_NAMES = {
    0x00: "OPERATION_OK", 0x0C: "NO_CHANGES", 0x0E: "OUT_OF_EEPROM_ERROR",
    0x1C: "ILLEGAL_COMMAND_CODE", 0x1E: "INTEGRITY_ERROR", 0x40: "NO_SUCH_KEY",
    0x7E: "LENGTH_ERROR", 0x9D: "PERMISSION_DENIED", 0x9E: "PARAMETER_ERROR",
    0xA0: "APPLICATION_NOT_FOUND", 0xA1: "APPL_INTEGRITY_ERROR", 0xAE: "AUTHENTICATION_ERROR",
    0xAF: "ADDITIONAL_FRAME", 0xBE: "BOUNDARY_ERROR", 0xC1: "PICC_INTEGRITY_ERROR",
    0xCA: "COMMAND_ABORTED", 0xCD: "PICC_DISABLED_ERROR", 0xCE: "COUNT_ERROR",
    0xDE: "DUPLICATE_ERROR", 0xEE: "EEPROM_ERROR", 0xF0: "FILE_NOT_FOUND",
    0xF1: "FILE_INTEGRITY_ERROR",
}

# Instruction codes of the native commands.
GET_VERSION, SELECT_APPLICATION, FORMAT_PICC = 0x60, 0x5A, 0xFC
AUTHENTICATE_LEGACY, AUTHENTICATE_ISO, AUTHENTICATE_AES = 0x0A, 0x1A, 0xAA
GET_KEY_SETTINGS, CHANGE_KEY_SETTINGS, GET_KEY_VERSION, CHANGE_KEY = 0x45, 0x54, 0x64, 0xC4
GET_APPLICATION_IDS, CREATE_APPLICATION, DELETE_APPLICATION = 0x6A, 0xCA, 0xDA
GET_FILE_IDS, GET_FILE_SETTINGS, DELETE_FILE = 0x6F, 0xF5, 0xDF
CREATE_STD_DATA_FILE, CREATE_VALUE_FILE = 0xCD, 0xCC
WRITE_DATA, READ_DATA = 0x3D, 0xBD
CREDIT, DEBIT, GET_VALUE, COMMIT_TRANSACTION, ABORT_TRANSACTION = 0x0C, 0xDC, 0x6C, 0xC7, 0xA7
FRAMES_MAX = 160                 # additional frames accepted in one answer: an 8 KiB file
                                 # (the most one holds) and its MAC in 59-byte frames is 140
COMMAND_FRAME_MAX = 52           # data bytes of a command frame; longer ones go on in AF frames
PICC = b"\x00\x00\x00"          # the card's own level
# Key kinds in CreateApplication's second byte, and in ChangeKey's key number for the
# card master key.
KIND_FLAGS = {AES: 0x80, TDES3: 0x40}
DES_FAMILY = "DES/2K3DES"       # the kind of keys without a flag: each DES or 2K3DES by its halves
STORAGE_CODES = {2048: 0x16, 4096: 0x18, 8192: 0x1A}   # GetVersion's storage size byte
FILE_TYPES = {0: "standard data", 1: "backup data", 2: "value", 3: "linear record", 4: "cyclic record"}
COMMUNICATION = {0: "plain", 1: "MACed", 3: "enciphered"}


class DesfireError(Exception):
    """The card answered an error status, or something that is not a DESFire answer."""

    def __init__(self, message: str, status: int = None):
        super().__init__(message)
        self.status = status


def wrap(ins: int, data: bytes = b"") -> bytes:
    """The ISO 7816-4 APDU of a native command."""
    if not 0 <= ins <= 0xFF or len(data) > 0xFF:
        raise ValueError("an instruction byte and at most 255 bytes of data")
    return bytes([WRAP_CLA, ins, 0, 0]) + (bytes([len(data)]) + data if data else b"") + b"\x00"


def unwrap(answer: bytes) -> tuple[bytes, int]:
    """(data, DESFire status) of a wrapped answer."""
    if len(answer) < 2 or answer[-2] != 0x91:
        sw = answer[-2:].hex().upper() if len(answer) >= 2 else answer.hex()
        raise DesfireError(f"not a DESFire answer: status word {sw or '(none)'}")
    return bytes(answer[:-2]), answer[-1]


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, f"UNKNOWN_{status:02X}")


def unframe_native(answer: bytes) -> tuple[bytes, int]:
    """(data, DESFire status) of a native answer."""
    if not answer:
        raise DesfireError("not a DESFire answer: an empty frame")
    return bytes(answer[1:]), answer[0]


MAC_LENGTH = 8


@dataclass
class Session:
    """An authentication's state: legacy (D40) or new (EV1 ISO / AES) secure messaging."""
    legacy: bool
    kind: str                   # of the session key: DES, 2K3DES, 3K3DES or AES
    key: bytes
    iv: bytes
    key_no: int


@dataclass(frozen=True)
class FileSettings:
    file_type: int              # FILE_TYPES
    communication: int          # COMMUNICATION
    access: int                 # read, write, read&write, change: a nibble each, highest first
    size: int = 0               # a data file's
    lower: int = 0              # a value file's limits, limited credit and its switch
    upper: int = 0
    limited_credit_value: int = 0
    limited_credit: bool = False

    @property
    def keys(self) -> dict:
        """{right: key number, 14 free, 15 never}."""
        return {name: (self.access >> shift) & 0xF
                for name, shift in (("read", 12), ("write", 8), ("read&write", 4), ("change", 0))}


def parse_file_settings(data: bytes) -> FileSettings:
    if len(data) < 4:
        raise DesfireError(f"GetFileSettings: {len(data)} bytes is not a file's settings")
    file_type, communication, access = data[0], data[1] & 0x03, int.from_bytes(data[2:4], "little")
    if file_type in (0, 1) and len(data) == 7:
        return FileSettings(file_type, communication, access, size=int.from_bytes(data[4:7], "little"))
    if file_type == 2 and len(data) == 17:
        lower, upper, limited = (int.from_bytes(data[i:i + 4], "little", signed=True) for i in (4, 8, 12))
        return FileSettings(file_type, communication, access, lower=lower, upper=upper,
                            limited_credit_value=limited, limited_credit=bool(data[16] & 1))
    return FileSettings(file_type, communication, access)


class Desfire:
    def __init__(self, transmit, native: bool = False):
        self.transmit = transmit
        self.native = native
        self.session = None         # a Session after an authentication
        self.selected = PICC

    # ---- frames ---------------------------------------------------------------------

    def _frame(self, ins: int, data: bytes) -> tuple[bytes, int]:
        if self.native:
            return unframe_native(self.transmit(bytes([ins]) + data))
        return unwrap(self.transmit(wrap(ins, data)))

    def _send(self, ins: int, data: bytes) -> tuple[bytes, int]:
        """Send a command, in AF frames after the first when it is long."""
        answer, status = self._frame(ins, data[:COMMAND_FRAME_MAX])
        rest = data[COMMAND_FRAME_MAX:]
        while rest and status == ADDITIONAL_FRAME and not answer:
            answer, status = self._frame(ADDITIONAL_FRAME, rest[:COMMAND_FRAME_MAX])
            rest = rest[COMMAND_FRAME_MAX:]
        if rest and status == OK:
            raise DesfireError(f"command {ins:#04x}: the card ended it before all its data was sent")
        return answer, status

    def _fail(self, what: str, status: int):
        self.session = None
        raise DesfireError(f"{what}: {status_name(status)} ({status:#04x})", status)

    def exchange(self, ins: int, data: bytes = b"", what: str = "", wire: bytes = None) -> bytes:
        """Send a command, collect every additional frame, raise on an error status; in
        an EV1 session, MAC the command and check the answer's MAC. `wire`: the bytes to
        send instead of data (an enciphered command, which moved the IV itself)."""
        what = what or f"command {ins:#04x}"
        s = self.session
        if s is not None and not s.legacy and wire is None:
            s.iv = cmac(s.key, bytes([ins]) + data, s.iv, kind=s.kind)
        answer, status = self._send(ins, data if wire is None else wire)
        frames = 0
        while status == ADDITIONAL_FRAME:
            frames += 1
            if frames > FRAMES_MAX:
                self._fail(f"{what}: the card keeps sending frames", status)
            more, status = self._frame(ADDITIONAL_FRAME, b"")
            answer += more
        if status != OK:
            self._fail(what, status)
        if s is not None and not s.legacy and self.session is s:
            answer, mac = answer[:-MAC_LENGTH], answer[-MAC_LENGTH:]
            expected = cmac(s.key, answer + bytes([status]), s.iv, kind=s.kind)
            if len(mac) != MAC_LENGTH or mac != expected[:MAC_LENGTH]:
                self.session = None
                raise DesfireError(f"{what}: the answer's MAC is wrong (not the card we "
                                   "authenticated with, or altered)", 0x1E)
            s.iv = expected
        return answer

    # ---- authentication ------------------------------------------------------------

    def authenticate_aes(self, key_no: int, key: bytes) -> None:
        """EV1 AES authentication (0xAA) with key `key_no` of the selected application
        (or the card)."""
        self._authenticate(AUTHENTICATE_AES, key_no, key, AES)

    def authenticate_iso(self, key_no: int, key: bytes) -> None:
        """EV1 ISO authentication (0x1A) with a DES, 2K3DES or 3K3DES key."""
        self._authenticate(AUTHENTICATE_ISO, key_no, key, des_kind(key))

    def authenticate_legacy(self, key_no: int, key: bytes) -> None:
        """The D40 authentication (0x0A), DES and 2K3DES keys."""
        if len(key) != 16:
            raise ValueError("a legacy authentication takes a 16-byte DES or 2K3DES key")
        self._authenticate(AUTHENTICATE_LEGACY, key_no, key, des_kind(key))

    def _authenticate(self, ins: int, key_no: int, key: bytes, kind: str) -> None:
        name = {AUTHENTICATE_LEGACY: "Authenticate", AUTHENTICATE_ISO: "AuthenticateISO",
                AUTHENTICATE_AES: "AuthenticateAES"}[ins]
        if len(key) != KEY_LENGTHS[kind]:
            raise ValueError(f"{name}: a {kind} key is {KEY_LENGTHS[kind]} bytes")
        self.session = None
        size = random_length(kind)
        block = block_of(kind)
        challenge, status = self._frame(ins, bytes([key_no]))
        if status != ADDITIONAL_FRAME or len(challenge) != size:
            self._fail(name, status)
        legacy = ins == AUTHENTICATE_LEGACY
        rnd_b = cbc_decrypt(key, bytes(block), challenge, kind)
        rnd_a = os.urandom(size)
        if legacy:
            token = legacy_send(key, rnd_a + rotate_left(rnd_b))
            iv = bytes(DES_BLOCK)
        else:
            token = cbc_encrypt(key, challenge[-block:], rnd_a + rotate_left(rnd_b), kind)
            iv = token[-block:]
        proof, status = self._frame(ADDITIONAL_FRAME, token)
        if status != OK:
            self._fail(f"{name}: the card does not take this key", status)
        if len(proof) != size or cbc_decrypt(key, iv, proof, kind) != rotate_left(rnd_a):
            raise DesfireError(f"{name}: the card could not prove it holds the key", 0xAE)
        self.session = Session(legacy, kind, session_key(rnd_a, rnd_b, kind), bytes(block), key_no)

    # ---- enciphered commands ---------------------------------------------------------

    def _enciphered(self, ins: int, header: bytes, plain_crc: bytes, plain_legacy: bytes,
                    what: str, ends_session: bool = False) -> None:
        """Send `header` and the enciphered rest: the EV1 plain text (with its CRC32) or,
        after a legacy authentication, the D40 one (with CRC16)."""
        s = self.session
        if s is None:
            raise DesfireError(f"{what}: authenticate first")
        if s.legacy:
            cryptogram = legacy_send(s.key, pad_zeros(plain_legacy, DES_BLOCK))
        else:
            cryptogram = cbc_encrypt(s.key, s.iv, pad_zeros(plain_crc, block_of(s.kind)), s.kind)
            s.iv = cryptogram[-block_of(s.kind):]
        if ends_session:
            answer, status = self._send(ins, header + cryptogram)
            self.session = None
            if status != OK:
                self._fail(what, status)
            return
        self.exchange(ins, what=what, wire=header + cryptogram)

    def change_key(self, key_no: int, new_key: bytes, old_key: bytes = None, version: int = 0,
                   kind: str = AES) -> None:
        """Change key `key_no` of the selected application (or the card master key, which
        may change kind: `kind` of the new key), in a session. The key the session stands
        on needs only the new key, and ends the session; another key needs its old value
        too. A DES-kind key carries its version in its parity bits."""
        if self.session is None:
            raise DesfireError("ChangeKey: authenticate first")
        if len(new_key) != KEY_LENGTHS[kind]:
            raise ValueError(f"ChangeKey: a {kind} key is {KEY_LENGTHS[kind]} bytes")
        number = key_no | (KIND_FLAGS.get(kind, 0) if self.selected == PICC else 0)
        if kind != AES:
            new_key = with_des_version(new_key, version)
        own = key_no == self.session.key_no
        if not own and (old_key is None or len(old_key) != len(new_key)):
            raise ValueError("changing another key than the session's needs its old value, of the same length")
        key_part = new_key if own else xor(new_key, old_key)
        payload = key_part + (bytes([version]) if kind == AES else b"")
        header = bytes([CHANGE_KEY, number])
        ev1 = payload + crc32(header + payload) + (b"" if own else crc32(new_key))
        d40 = payload + crc16(payload) + (b"" if own else crc16(new_key))
        self._enciphered(CHANGE_KEY, bytes([number]), ev1, d40, "ChangeKey", ends_session=own)

    def change_key_settings(self, settings: int) -> None:
        """New key settings for the selected level (its master key's session)."""
        header = bytes([CHANGE_KEY_SETTINGS])
        self._enciphered(CHANGE_KEY_SETTINGS, b"", bytes([settings]) + crc32(header + bytes([settings])),
                         bytes([settings]) + crc16(bytes([settings])), "ChangeKeySettings")

    # ---- the card and its applications -------------------------------------------------

    def get_version(self) -> bytes:
        """28 bytes: hardware and software version, then UID (7), batch (5), week, year."""
        return self.exchange(GET_VERSION, what="GetVersion")

    def select_application(self, aid: bytes) -> None:
        """Selecting ends any authentication, on the card as here."""
        self.session = None
        self.exchange(SELECT_APPLICATION, _aid(aid), "SelectApplication")
        self.selected = bytes(aid)

    def get_application_ids(self) -> list[bytes]:
        ids = self.exchange(GET_APPLICATION_IDS, what="GetApplicationIDs")
        return [ids[i:i + 3] for i in range(0, len(ids) - len(ids) % 3, 3)]

    def get_key_settings(self) -> tuple[int, int, str]:
        """(key settings, number of keys, key kind) of the selected level."""
        answer = self.exchange(GET_KEY_SETTINGS, what="GetKeySettings")
        if len(answer) != 2:
            raise DesfireError(f"GetKeySettings: {len(answer)} bytes is not key settings")
        kind = AES if answer[1] & 0x80 else TDES3 if answer[1] & 0x40 else DES_FAMILY
        return answer[0], answer[1] & 0x0F, kind

    def get_key_version(self, key_no: int) -> int:
        answer = self.exchange(GET_KEY_VERSION, bytes([key_no]), "GetKeyVersion")
        if len(answer) != 1:
            raise DesfireError(f"GetKeyVersion: {len(answer)} bytes is not a version")
        return answer[0]

    def format_picc(self) -> None:
        self.exchange(FORMAT_PICC, what="FormatPICC")

    def create_application(self, aid: bytes, key_settings: int, keys: int, kind: str = AES) -> None:
        """An application of `keys` keys of this kind (all zero, version 0)."""
        if not 1 <= keys <= 14:
            raise ValueError("an application has 1 to 14 keys")
        self.exchange(CREATE_APPLICATION, _aid(aid) + bytes([key_settings, KIND_FLAGS.get(kind, 0) | keys]),
                      "CreateApplication")

    def delete_application(self, aid: bytes) -> None:
        """Deleting the selected application leaves the card level selected and no session."""
        self.exchange(DELETE_APPLICATION, _aid(aid), "DeleteApplication")
        if bytes(aid) == self.selected:
            self.session, self.selected = None, PICC

    # ---- files ---------------------------------------------------------------------------

    def get_file_ids(self) -> list[int]:
        return list(self.exchange(GET_FILE_IDS, what="GetFileIDs"))

    def get_file_settings(self, file_no: int) -> FileSettings:
        return parse_file_settings(self.exchange(GET_FILE_SETTINGS, bytes([file_no]), "GetFileSettings"))

    def create_std_data_file(self, file_no: int, communication: int, access: int, size: int) -> None:
        self.exchange(CREATE_STD_DATA_FILE, bytes([file_no, communication]) + access.to_bytes(2, "little")
                      + size.to_bytes(3, "little"), "CreateStdDataFile")

    def create_value_file(self, file_no: int, communication: int, access: int, lower: int,
                          upper: int, value: int, limited_credit: bool = False) -> None:
        self.exchange(CREATE_VALUE_FILE, bytes([file_no, communication]) + access.to_bytes(2, "little")
                      + b"".join(v.to_bytes(4, "little", signed=True) for v in (lower, upper, value))
                      + bytes([1 if limited_credit else 0]), "CreateValueFile")

    def delete_file(self, file_no: int) -> None:
        self.exchange(DELETE_FILE, bytes([file_no]), "DeleteFile")

    def write_data(self, file_no: int, offset: int, data: bytes) -> None:
        self.exchange(WRITE_DATA, bytes([file_no]) + offset.to_bytes(3, "little")
                      + len(data).to_bytes(3, "little") + data, "WriteData")

    def read_data(self, file_no: int, offset: int, length: int) -> bytes:
        return self.exchange(READ_DATA, bytes([file_no]) + offset.to_bytes(3, "little")
                             + length.to_bytes(3, "little"), "ReadData")

    def get_value(self, file_no: int) -> int:
        return int.from_bytes(self.exchange(GET_VALUE, bytes([file_no]), "GetValue"), "little",
                              signed=True)

    def credit(self, file_no: int, amount: int) -> None:
        self.exchange(CREDIT, bytes([file_no]) + amount.to_bytes(4, "little"), "Credit")

    def debit(self, file_no: int, amount: int) -> None:
        self.exchange(DEBIT, bytes([file_no]) + amount.to_bytes(4, "little"), "Debit")

    def commit_transaction(self) -> None:
        self.exchange(COMMIT_TRANSACTION, what="CommitTransaction")

def _aid(aid: bytes) -> bytes:
    if len(aid) != 3:
        raise ValueError("an application id is 3 bytes")
    return aid
