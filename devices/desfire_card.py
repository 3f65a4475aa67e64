"""A simulated MIFARE DESFire EV1 card, for tests and demos, as the datasheet and cards
in the field behave; it sits in a virtual reader (devices.vpcd).

Framing: native frames (`INS data`, answered `SW data`) and ISO 7816-4 wrapped ones
(`90 INS 00 00 [Lc data] [00]`, answered `data 91 SW`); class 00 (ISO 7816-4's own
commands) is not simulated and answers 6E00. Answers longer than a frame (59 bytes) go
in AF frames; WriteData longer than a frame comes in AF frames the card asks for.

As it leaves the factory: the card master key is the DES key of zeros, version 0, key
settings 0x0F, no application; 8 KiB of memory unless told. It keeps its memory when
pulled out; power-off forgets what is volatile (the selected application, an open
transaction, an authentication, chained frames).

Commands: GetVersion (three frames: hardware 1.0, software 1.4 as an EV1's, then UID,
batch, production week and year in BCD), SelectApplication, GetApplicationIDs,
CreateApplication (DES/2K3DES, 3K3DES or AES keys, zero), DeleteApplication,
FormatPICC, GetKeySettings, ChangeKeySettings, GetKeyVersion, ChangeKey (the card
master key may change kind), Authenticate (legacy, 0x0A), AuthenticateISO (0x1A),
AuthenticateAES (0xAA), GetFileIDs, GetFileSettings, CreateStdDataFile,
CreateValueFile, DeleteFile, WriteData, ReadData, GetValue, Credit, Debit,
CommitTransaction, AbortTransaction. Files use plain communication only.

Enforced as on the card: key settings at both levels (bit 0 master key changeable,
bit 1 free listing, bit 2 free create / delete, bit 3 configuration changeable; an
application's high nibble names the key that changes keys: 0 its master key, 1 to 13
that key, 14 the key itself, 15 none but the master key itself), file access rights
(a file's read, write, read&write and change keys; E free, F never), the kind of key
each authentication takes. After an ISO or AES authentication every command moves the
session IV on and every answer carries its 8-byte CMAC; after a legacy one, plain
answers carry none. An error ends the authentication.

`random` (bytes of a length -> bytes) stands for the card's random number generator:
tests give it the RndB of a published trace.
"""
import os
from dataclasses import dataclass, field

from . import desfire
from .desfire import ADDITIONAL_FRAME, DES_FAMILY, KIND_FLAGS, PICC, STORAGE_CODES, Session
from .desfire_crypto import (AES, DES_BLOCK, TDES3, block_of, cbc_decrypt,
                             cbc_encrypt, cmac, crc16, crc32, des_key_version, des_kind,
                             legacy_receive_sent, random_length, rotate_left, session_key, xor)

ATR = bytes.fromhex("3B8180018080")
FRAME_MAX = 59                  # data bytes in one answer frame
FILE_SIZE_MAX = 8 * 1024
FACTORY_KEY_SETTINGS = 0x0F
READ, WRITE, READ_WRITE = 12, 8, 4                 # bit shifts of a file's access nibbles
FREE = 0xE
OK = 0x00
# Status codes.
OUT_OF_EEPROM, ILLEGAL_COMMAND, INTEGRITY_ERROR = 0x0E, 0x1C, 0x1E
NO_SUCH_KEY, LENGTH_ERROR, PERMISSION_DENIED, PARAMETER_ERROR = 0x40, 0x7E, 0x9D, 0x9E
APPLICATION_NOT_FOUND, AUTHENTICATION_ERROR, BOUNDARY_ERROR = 0xA0, 0xAE, 0xBE
DUPLICATE_ERROR, FILE_NOT_FOUND = 0xDE, 0xF0


class _Status(Exception):
    def __init__(self, status: int):
        self.status = status


@dataclass
class _File:
    kind: str                   # "data" or "value"
    access: int = 0xEEEE        # read, write, read&write, change: a nibble each
    size: int = 0
    data: bytearray = None
    lower: int = 0
    upper: int = 0
    value: int = 0
    limited_credit: bool = False

    def settings(self) -> bytes:
        common = bytes([0 if self.kind == "data" else 2, 0]) + self.access.to_bytes(2, "little")
        if self.kind == "data":
            return common + self.size.to_bytes(3, "little")
        return common + b"".join(v.to_bytes(4, "little", signed=True) for v in (self.lower, self.upper, 0)) \
            + bytes([1 if self.limited_credit else 0])


@dataclass
class _Key:
    kind: str                   # DES_FAMILY, 3K3DES or AES
    value: bytes
    aes_version: int = 0        # a DES-kind key's version is in its parity bits

    @property
    def version(self) -> int:
        return self.aes_version if self.kind == AES else des_key_version(self.value)

    @property
    def cipher(self) -> str:
        """The kind of cipher this key authenticates with."""
        return AES if self.kind == AES else des_kind(self.value)


def _key_length(kind: str) -> int:
    return 24 if kind == TDES3 else 16


def _zero_key(kind: str) -> _Key:
    return _Key(kind, bytes(_key_length(kind)))


@dataclass
class _Application:
    key_settings: int
    keys: list                  # of _Key
    files: dict = field(default_factory=dict)


class DesfireCard:
    def __init__(self, uid: bytes, storage: int = 8192, batch: bytes = bytes.fromhex("BA44AF520E"),
                 production: tuple = (0x12, 0x19), random=os.urandom):
        if len(uid) != 7:
            raise ValueError("a DESFire UID is 7 bytes")
        if storage not in STORAGE_CODES or len(batch) != 5:
            raise ValueError(f"storage is one of {sorted(STORAGE_CODES)} bytes; a batch number is 5 bytes")
        self.uid = uid
        self.atr = ATR
        self.random = random
        hardware = bytes([0x04, 0x01, 0x01, 0x01, 0x00, STORAGE_CODES[storage], 0x05])
        software = bytes([0x04, 0x01, 0x01, 0x01, 0x04, STORAGE_CODES[storage], 0x05])
        self.version = [hardware, software, uid + batch + bytes(production)]
        self.applications = {PICC: _Application(FACTORY_KEY_SETTINGS, [_zero_key(DES_FAMILY)])}
        self.power(True)

    def power(self, on: bool):
        self._selected = PICC
        self._pending = {}          # value file number -> change not yet committed
        self._frames = []           # the rest of a chained answer
        self._incoming = None       # (INS, data so far) of a command still coming in frames
        self._auth = None           # (command, key number, key, cipher, RndB, challenge) while authenticating
        self._ending = False        # the session ends once this answer is out
        self._session = None        # a desfire.Session once authenticated (the same state as the host keeps)

    # ---- framing ------------------------------------------------------------------------

    def process(self, frame: bytes) -> bytes:
        if frame[:1] == bytes([desfire.WRAP_CLA]):
            return self._wrapped(frame)
        if frame[:1] == b"\x00":
            return b"\x6E\x00"                          # ISO 7816-4 commands: not simulated
        if not frame:
            return bytes([LENGTH_ERROR])
        status, data = self._native(frame[0], bytes(frame[1:]))
        return bytes([status]) + data

    def _wrapped(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return b"\x67\x00"
        if apdu[2:4] != b"\x00\x00":
            return b"\x6A\x86"                          # P1 P2 must be zero
        body = apdu[4:]
        if len(body) <= 1:                              # no data: [Le]
            data = b""
        elif body[0] and len(body) in (1 + body[0], 2 + body[0]):
            data = bytes(body[1:1 + body[0]])           # Lc data [Le]
        else:
            return b"\x67\x00"                          # lengths that do not add up
        status, answer = self._native(apdu[1], data)
        return answer + bytes([0x91, status])

    def _native(self, ins: int, data: bytes) -> tuple[int, bytes]:
        """(status, data) of one frame."""
        if ins == ADDITIONAL_FRAME and self._frames:
            return self._next_frame()
        self._frames = []
        if ins == ADDITIONAL_FRAME and self._incoming is not None:
            ins, data = self._incoming[0], self._incoming[1] + data
            self._incoming = None
        elif ins == ADDITIONAL_FRAME and self._auth is not None:
            return self._finish_authentication(data)
        else:
            self._incoming = None
        self._auth = None
        if ins in (desfire.AUTHENTICATE_LEGACY, desfire.AUTHENTICATE_ISO, desfire.AUTHENTICATE_AES):
            return self._start_authentication(ins, data)
        if ins == desfire.WRITE_DATA and len(data) >= 7 and \
                len(data) - 7 < int.from_bytes(data[4:7], "little"):
            self._incoming = (ins, data)                # more of its data comes in AF frames
            return ADDITIONAL_FRAME, b""
        session = self._session
        enciphered = ins in (desfire.CHANGE_KEY, desfire.CHANGE_KEY_SETTINGS)
        if session is not None and not session.legacy and not enciphered:
            session.iv = cmac(session.key, bytes([ins]) + data, session.iv, kind=session.kind)
        try:
            answer = self._command(ins, data)
        except _Status as exc:
            self._session = None                        # an error ends the session
            return exc.status, b""
        frames = answer if isinstance(answer, list) else None
        answer = b"".join(answer) if frames else answer
        if session is not None and not session.legacy and self._session is session:
            mac = cmac(session.key, answer + bytes([OK]), session.iv, kind=session.kind)
            session.iv = mac
            answer += mac[:8]
            if frames:
                frames[-1] += mac[:8]
        if self._ending:
            self._session, self._ending = None, False
        if frames is None and len(answer) > FRAME_MAX:
            frames = [answer[i:i + FRAME_MAX] for i in range(0, len(answer), FRAME_MAX)]
        if frames:
            self._frames = frames
            return self._next_frame()
        return OK, answer

    def _next_frame(self) -> tuple[int, bytes]:
        frame = self._frames.pop(0)
        return (ADDITIONAL_FRAME if self._frames else OK), frame

    # ---- authentication -----------------------------------------------------------------

    def _start_authentication(self, ins: int, data: bytes) -> tuple[int, bytes]:
        self._session = None
        app = self.applications[self._selected]
        if len(data) != 1:
            return LENGTH_ERROR, b""
        if data[0] >= len(app.keys):
            return NO_SUCH_KEY, b""
        key = app.keys[data[0]]
        cipher = key.cipher
        takes = {desfire.AUTHENTICATE_AES: key.kind == AES,
                 desfire.AUTHENTICATE_ISO: key.kind != AES,
                 desfire.AUTHENTICATE_LEGACY: key.kind == DES_FAMILY}[ins]
        if not takes:
            return AUTHENTICATION_ERROR, b""           # not the authentication for this key's kind
        rnd_b = self.random(random_length(cipher))
        challenge = cbc_encrypt(key.value, bytes(block_of(cipher)), rnd_b, cipher)
        self._auth = (ins, data[0], key.value, cipher, rnd_b, challenge)
        return ADDITIONAL_FRAME, challenge

    def _finish_authentication(self, token: bytes) -> tuple[int, bytes]:
        ins, key_no, key, cipher, rnd_b, challenge = self._auth
        self._auth = None
        if len(token) != 2 * len(rnd_b):
            return LENGTH_ERROR, b""
        legacy = ins == desfire.AUTHENTICATE_LEGACY
        block = block_of(cipher)
        if legacy:
            plain = legacy_receive_sent(key, token)
        else:
            plain = cbc_decrypt(key, challenge[-block:], token, cipher)
        if plain[len(rnd_b):] != rotate_left(rnd_b):
            return AUTHENTICATION_ERROR, b""            # the host does not hold the key
        rnd_a = plain[:len(rnd_b)]
        proof = cbc_encrypt(key, bytes(block) if legacy else token[-block:], rotate_left(rnd_a), cipher)
        self._session = Session(legacy, cipher, session_key(rnd_a, rnd_b, cipher), bytes(block), key_no)
        return OK, proof

    def _deciphered(self, cryptogram: bytes) -> bytes:
        """The plain text of an enciphered command, in the session's scheme."""
        s = self._session
        block = DES_BLOCK if s.legacy else block_of(s.kind)
        if not cryptogram or len(cryptogram) % block:
            raise _Status(LENGTH_ERROR)
        if s.legacy:
            return legacy_receive_sent(s.key, cryptogram)
        plain = cbc_decrypt(s.key, s.iv, cryptogram, s.kind)
        s.iv = cryptogram[-block:]
        return plain

    # ---- access -------------------------------------------------------------------------

    def _application(self) -> _Application:
        if self._selected == PICC:
            raise _Status(PERMISSION_DENIED)            # files live in applications
        return self.applications[self._selected]

    def _master_or(self, free_bit: int) -> None:
        """Allowed freely when the selected level's key settings set this bit, else only
        after authenticating with its master key."""
        if self.applications[self._selected].key_settings & free_bit:
            return
        if self._session is None or self._session.key_no != 0:
            raise _Status(AUTHENTICATION_ERROR)         # the authentication this needs is missing

    def _file(self, number: int, kind: str) -> _File:
        f = self._application().files.get(number)
        if f is None:
            raise _Status(FILE_NOT_FOUND)
        if f.kind != kind:
            raise _Status(PARAMETER_ERROR)
        return f

    def _allowed(self, f: _File, *rights: int) -> None:
        """Access by one of the file's keys for these rights, or free access."""
        granted = [(f.access >> shift) & 0xF for shift in rights]
        if FREE in granted:
            return
        if self._session is None or self._session.key_no not in granted:
            raise _Status(PERMISSION_DENIED)

    @staticmethod
    def _length(data: bytes, *n: int):
        if len(data) not in n:
            raise _Status(LENGTH_ERROR)

    # ---- commands -----------------------------------------------------------------------

    def _command(self, ins: int, data: bytes):
        handler = self._HANDLERS.get(ins)
        if handler is None:
            raise _Status(ILLEGAL_COMMAND)
        return handler(self, data)

    def _get_version(self, data):
        self._length(data, 0)
        return list(self.version)

    def _select_application(self, data):
        self._length(data, 3)
        if data not in self.applications:
            raise _Status(APPLICATION_NOT_FOUND)
        self._selected, self._pending, self._session = data, {}, None
        return b""

    def _get_application_ids(self, data):
        self._length(data, 0)
        if self._selected != PICC:
            raise _Status(PERMISSION_DENIED)
        self._master_or(0x02)
        return b"".join(aid for aid in self.applications if aid != PICC)

    def _create_application(self, data):
        self._length(data, 5)
        if self._selected != PICC:
            raise _Status(PERMISSION_DENIED)
        self._master_or(0x04)
        aid, settings, keys = data[:3], data[3], data[4]
        if aid == PICC:
            raise _Status(PARAMETER_ERROR)
        if aid in self.applications:
            raise _Status(DUPLICATE_ERROR)
        if not 1 <= keys & 0x0F <= 14 or keys & 0xC0 == 0xC0 or keys & 0x30:
            raise _Status(PARAMETER_ERROR)
        if len(self.applications) > 28:
            raise _Status(0xCE)                          # COUNT_ERROR: 28 applications at most
        kind = AES if keys & 0x80 else TDES3 if keys & 0x40 else DES_FAMILY
        self.applications[aid] = _Application(settings, [_zero_key(kind) for _ in range(keys & 0x0F)])
        return b""

    def _delete_application(self, data):
        self._length(data, 3)
        if data == PICC or data not in self.applications:
            raise _Status(APPLICATION_NOT_FOUND if data != PICC else PARAMETER_ERROR)
        # Always the card master key or the application's own master key, whatever the
        # card's free create/delete bit says (it frees creation only).
        s = self._session
        if s is None or s.key_no != 0 or self._selected not in (PICC, data):
            raise _Status(AUTHENTICATION_ERROR)
        del self.applications[data]
        if self._selected == data:                      # the answer is still MACed; then the card level
            self._selected, self._ending = PICC, True
        return b""

    def _format_picc(self, data):
        self._length(data, 0)
        s = self._session
        if self._selected != PICC or s is None or s.key_no != 0:
            raise _Status(AUTHENTICATION_ERROR if s is None else PERMISSION_DENIED)
        self.applications = {PICC: self.applications[PICC]}
        return b""

    def _get_key_settings(self, data):
        self._length(data, 0)
        self._master_or(0x02)
        app = self.applications[self._selected]
        kind = app.keys[0].kind if self._selected == PICC else app.keys[-1].kind
        return bytes([app.key_settings, len(app.keys) | KIND_FLAGS.get(kind, 0)])

    def _change_key_settings(self, data):
        app = self.applications[self._selected]
        s = self._session
        if s is None:
            raise _Status(AUTHENTICATION_ERROR)
        if s.key_no != 0 or not app.key_settings & 0x08:
            raise _Status(PERMISSION_DENIED)           # the master key, while configuration is changeable
        plain = self._deciphered(data)
        if s.legacy:
            ok = plain[1:3] == crc16(plain[:1])
        else:
            ok = plain[1:5] == crc32(bytes([desfire.CHANGE_KEY_SETTINGS]) + plain[:1])
        if not ok:
            raise _Status(INTEGRITY_ERROR)
        app.key_settings = plain[0]
        return b""

    def _get_key_version(self, data):
        self._length(data, 1)
        keys = self.applications[self._selected].keys
        if data[0] & 0x0F >= len(keys) or data[0] & 0xF0:
            raise _Status(NO_SUCH_KEY)
        return bytes([keys[data[0]].version])

    def _may_change(self, app: _Application, key_no: int) -> None:
        s = self._session
        if key_no == 0:
            if s.key_no != 0 or not app.key_settings & 0x01:
                raise _Status(PERMISSION_DENIED)        # only the master key, while changeable
            return
        rule = app.key_settings >> 4
        allowed = {0x0: s.key_no == 0, 0xE: s.key_no == key_no, 0xF: False}.get(rule, s.key_no == rule)
        if not allowed:
            raise _Status(PERMISSION_DENIED)

    def _change_key(self, data):
        s = self._session
        if s is None:
            raise _Status(AUTHENTICATION_ERROR)
        app = self.applications[self._selected]
        if len(data) < 1 + DES_BLOCK:
            raise _Status(LENGTH_ERROR)
        number, key_no = data[0], data[0] & 0x0F
        if key_no >= len(app.keys) or (data[0] & 0x30):
            raise _Status(NO_SUCH_KEY)
        if self._selected == PICC:
            kind = AES if number & 0x80 else TDES3 if number & 0x40 else DES_FAMILY
        else:
            kind = app.keys[key_no].kind
            if number & 0xC0 and KIND_FLAGS.get(kind, 0) != number & 0xC0:
                raise _Status(PARAMETER_ERROR)        # an application's keys keep their kind
        self._may_change(app, key_no)
        plain = self._deciphered(data[1:])
        n = _key_length(kind)
        payload = plain[:n + (1 if kind == AES else 0)]
        own = key_no == s.key_no
        if s.legacy:
            checks = [(plain[len(payload):len(payload) + 2], crc16(payload))]
            tail = plain[len(payload) + 2:len(payload) + 4]
        else:
            checks = [(plain[len(payload):len(payload) + 4], crc32(bytes([desfire.CHANGE_KEY, number]) + payload))]
            tail = plain[len(payload) + 4:len(payload) + 8]
        new_value = payload[:n] if own else xor(payload[:n], app.keys[key_no].value)
        if not own:
            checks.append((tail, crc16(new_value) if s.legacy else crc32(new_value)))
        if any(found != expected for found, expected in checks):
            raise _Status(INTEGRITY_ERROR)
        app.keys[key_no] = _Key(kind, new_value, payload[n] if kind == AES else 0)
        if own:
            self._session = None                        # the key it stood on changed: the session ends
        return b""

    def _get_file_ids(self, data):
        self._length(data, 0)
        app = self._application()
        self._master_or(0x02)
        return bytes(sorted(app.files))

    def _get_file_settings(self, data):
        self._length(data, 1)
        app = self._application()
        self._master_or(0x02)
        if data[0] not in app.files:
            raise _Status(FILE_NOT_FOUND)
        return app.files[data[0]].settings()

    def _create_file(self, data, kind: str):
        app = self._application()
        self._master_or(0x04)
        self._length(data, 7 if kind == "data" else 17)
        if data[1] & 0x03:
            raise _Status(PARAMETER_ERROR)              # plain communication only, in this simulator
        access = int.from_bytes(data[2:4], "little")
        if kind == "data":
            size = int.from_bytes(data[4:7], "little")
            if size > FILE_SIZE_MAX:
                raise _Status(OUT_OF_EEPROM)
            new = _File("data", access=access, size=size, data=bytearray(size))
        else:
            lower, upper, value = (int.from_bytes(data[i:i + 4], "little", signed=True) for i in (4, 8, 12))
            if not lower <= value <= upper:
                raise _Status(BOUNDARY_ERROR)
            new = _File("value", access=access, lower=lower, upper=upper, value=value,
                        limited_credit=bool(data[16] & 1))
        if data[0] > 31:
            raise _Status(PARAMETER_ERROR)
        if data[0] in app.files:
            raise _Status(DUPLICATE_ERROR)
        app.files[data[0]] = new
        return b""

    def _delete_file(self, data):
        self._length(data, 1)
        app = self._application()
        self._master_or(0x04)
        if app.files.pop(data[0], None) is None:
            raise _Status(FILE_NOT_FOUND)
        self._pending.pop(data[0], None)
        return b""

    def _write_data(self, data):
        if len(data) < 7:
            raise _Status(LENGTH_ERROR)
        f = self._file(data[0], "data")
        self._allowed(f, WRITE, READ_WRITE)
        offset, length = int.from_bytes(data[1:4], "little"), int.from_bytes(data[4:7], "little")
        self._length(data[7:], length)
        if offset + length > f.size:
            raise _Status(BOUNDARY_ERROR)
        f.data[offset:offset + length] = data[7:]
        return b""

    def _read_data(self, data):
        self._length(data, 7)
        f = self._file(data[0], "data")
        self._allowed(f, READ, READ_WRITE)
        offset, length = int.from_bytes(data[1:4], "little"), int.from_bytes(data[4:7], "little")
        length = length or f.size - offset
        if offset + length > f.size:
            raise _Status(BOUNDARY_ERROR)
        return bytes(f.data[offset:offset + length])

    def _get_value(self, data):
        self._length(data, 1)
        f = self._file(data[0], "value")
        self._allowed(f, READ, WRITE, READ_WRITE)
        return f.value.to_bytes(4, "little", signed=True)

    def _credit_or_debit(self, data, credit: bool):
        self._length(data, 5)
        f = self._file(data[0], "value")
        if credit:
            self._allowed(f, READ_WRITE)
        else:
            self._allowed(f, READ, WRITE, READ_WRITE)
        amount = int.from_bytes(data[1:5], "little", signed=True)
        if amount < 0:
            raise _Status(PARAMETER_ERROR)
        change = self._pending.get(data[0], 0) + (amount if credit else -amount)
        if not f.lower <= f.value + change <= f.upper:
            raise _Status(BOUNDARY_ERROR)
        self._pending[data[0]] = change
        return b""

    def _commit(self, data):
        for number, change in self._pending.items():
            self._application().files[number].value += change
        self._pending = {}
        return b""

    def _abort(self, data):
        self._pending = {}
        return b""

    _HANDLERS = {
        desfire.GET_VERSION: _get_version,
        desfire.SELECT_APPLICATION: _select_application,
        desfire.GET_APPLICATION_IDS: _get_application_ids,
        desfire.CREATE_APPLICATION: _create_application,
        desfire.DELETE_APPLICATION: _delete_application,
        desfire.FORMAT_PICC: _format_picc,
        desfire.GET_KEY_SETTINGS: _get_key_settings,
        desfire.CHANGE_KEY_SETTINGS: _change_key_settings,
        desfire.GET_KEY_VERSION: _get_key_version,
        desfire.CHANGE_KEY: _change_key,
        desfire.GET_FILE_IDS: _get_file_ids,
        desfire.GET_FILE_SETTINGS: _get_file_settings,
        desfire.CREATE_STD_DATA_FILE: lambda self, data: self._create_file(data, "data"),
        desfire.CREATE_VALUE_FILE: lambda self, data: self._create_file(data, "value"),
        desfire.DELETE_FILE: _delete_file,
        desfire.WRITE_DATA: _write_data,
        desfire.READ_DATA: _read_data,
        desfire.GET_VALUE: _get_value,
        desfire.CREDIT: lambda self, data: self._credit_or_debit(data, True),
        desfire.DEBIT: lambda self, data: self._credit_or_debit(data, False),
        desfire.COMMIT_TRANSACTION: _commit,
        desfire.ABORT_TRANSACTION: _abort,
    }
