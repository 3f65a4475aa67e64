"""A simulated MIFARE DESFire EV1 card, for tests and demos: answers ISO-wrapped native
commands in a virtual reader (devices.vpcd). It keeps its memory when pulled out;
power-off forgets what is volatile (the selected application, an open transaction,
an authentication).

Supported: GetVersion (three frames), SelectApplication, CreateApplication (AES keys,
all zero until changed), CreateStdDataFile, CreateValueFile, WriteData, ReadData
(answers longer than a frame chained with AF), GetValue, Credit, Debit,
CommitTransaction, AbortTransaction, AuthenticateAES (EV1) and ChangeKey. After an
authentication every command moves the session IV on and every answer carries its
8-byte CMAC (plain communication); an error ends the session. File access rights are
enforced: a file's read, write and read&write keys (E: free, F: never); changing a key
needs the application's master key (key 0) or the key itself. The card master key is
an AES key of zeros.
"""
import os
from dataclasses import dataclass, field

from . import desfire
from .desfire_crypto import (BLOCK, cbc_decrypt, cbc_encrypt, cmac, crc32, rotate_left,
                             session_key, xor)

ATR = bytes.fromhex("3B8180018080")
FRAME_MAX = 59                  # data bytes in one answer frame
FILE_SIZE_MAX = 8 * 1024
ABORT_TRANSACTION = 0xA7
HARDWARE = bytes.fromhex("04010101001A05")
SOFTWARE = bytes.fromhex("04010101000405")
PICC = b"\x00\x00\x00"
READ, WRITE, READ_WRITE = 12, 8, 4      # bit shifts of a file's access nibbles
FREE = 0xE


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


@dataclass
class _Application:
    key_settings: int
    keys: list
    files: dict = field(default_factory=dict)


class DesfireCard:
    def __init__(self, uid: bytes):
        if len(uid) != 7:
            raise ValueError("a DESFire UID is 7 bytes")
        self.uid = uid
        self.atr = ATR
        self.applications = {PICC: _Application(0x0F, [bytes(BLOCK)])}
        self.power(True)

    def power(self, on: bool):
        self._selected = PICC
        self._pending = {}          # value file number -> change not yet committed
        self._frames = []           # the rest of a chained answer
        self._auth = None           # (key number, RndB, its ciphertext) while authenticating
        self._session = None        # [session key, IV, key number] once authenticated

    # ---- ISO framing, secure messaging ------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        if len(apdu) < 5 or apdu[0] != desfire.WRAP_CLA or apdu[2:4] != b"\x00\x00":
            return b"\x6E\x00"                          # not a wrapped DESFire command
        ins = apdu[1]
        data = bytes(apdu[5:5 + apdu[4]]) if len(apdu) > 5 else b""
        if ins == desfire.ADDITIONAL_FRAME and self._frames:
            return self._next_frame()
        self._frames = []
        if ins == desfire.ADDITIONAL_FRAME and self._auth is not None:
            return self._finish_authentication(data)
        self._auth = None
        if ins == desfire.AUTHENTICATE_AES:
            return self._start_authentication(data)
        session = self._session
        if session is not None and ins != desfire.CHANGE_KEY:
            session[1] = cmac(session[0], bytes([ins]) + data, session[1])
        try:
            answer = self._command(ins, data)
        except _Status as exc:
            self._session = None                        # an error ends the session
            return bytes([0x91, exc.status])
        chained = isinstance(answer, list)
        if chained:
            answer = b"".join(answer)
        if session is not None and self._session is session:
            mac = cmac(session[0], answer + b"\x00", session[1])
            session[1] = mac
            answer += mac[:8]
        if chained or len(answer) > FRAME_MAX:
            self._frames = [answer[i:i + FRAME_MAX] for i in range(0, len(answer), FRAME_MAX)] or [b""]
            return self._next_frame()
        return answer + b"\x91\x00"

    def _next_frame(self) -> bytes:
        frame = self._frames.pop(0)
        return frame + (b"\x91\xAF" if self._frames else b"\x91\x00")

    def _start_authentication(self, data: bytes) -> bytes:
        self._session = None
        keys = self.applications[self._selected].keys
        if len(data) != 1:
            return b"\x91\x7E"
        if data[0] >= len(keys):
            return b"\x91\x40"
        rnd_b = os.urandom(BLOCK)
        ek_rnd_b = cbc_encrypt(keys[data[0]], bytes(BLOCK), rnd_b)
        self._auth = (data[0], rnd_b, ek_rnd_b)
        return ek_rnd_b + b"\x91\xAF"

    def _finish_authentication(self, token: bytes) -> bytes:
        key_no, rnd_b, ek_rnd_b = self._auth
        self._auth = None
        key = self.applications[self._selected].keys[key_no]
        if len(token) != 2 * BLOCK:
            return b"\x91\x7E"
        plain = cbc_decrypt(key, ek_rnd_b, token)
        if plain[BLOCK:] != rotate_left(rnd_b):
            return b"\x91\xAE"                           # the host does not hold the key
        rnd_a = plain[:BLOCK]
        self._session = [session_key(rnd_a, rnd_b), bytes(BLOCK), key_no]
        return cbc_encrypt(key, token[-BLOCK:], rotate_left(rnd_a)) + b"\x91\x00"

    # ---- commands ---------------------------------------------------------------------

    def _application(self) -> _Application:
        if self._selected == PICC:
            raise _Status(0x9D)                         # files live in applications
        return self.applications[self._selected]

    def _file(self, number: int, kind: str) -> _File:
        f = self._application().files.get(number)
        if f is None:
            raise _Status(0xF0)
        if f.kind != kind:
            raise _Status(0x9E)
        return f

    def _allowed(self, f: _File, *rights: int) -> None:
        """Access by one of the file's keys for these rights, or free access."""
        granted = [(f.access >> shift) & 0xF for shift in rights]
        if FREE in granted:
            return
        if self._session is None or self._session[2] not in granted:
            raise _Status(0x9D)

    @staticmethod
    def _length(data: bytes, n: int):
        if len(data) != n:
            raise _Status(0x7E)

    def _command(self, ins: int, data: bytes):
        if ins == desfire.GET_VERSION:
            self._length(data, 0)
            return [HARDWARE, SOFTWARE, self.uid + bytes.fromhex("BA44AF520E") + b"\x2C\x19"]
        if ins == desfire.SELECT_APPLICATION:
            self._length(data, 3)
            if data not in self.applications:
                raise _Status(0xA0)
            self._selected, self._pending, self._session = data, {}, None
            return b""
        if ins == desfire.CREATE_APPLICATION:
            self._length(data, 5)
            if self._selected != PICC:
                raise _Status(0x9D)
            if data[:3] in self.applications:
                raise _Status(0xDE)
            if not 1 <= data[4] & 0x0F <= 14 or not data[4] & 0x80:
                raise _Status(0x9E)                     # AES keys only, 1 to 14 of them
            self.applications[data[:3]] = _Application(data[3], [bytes(BLOCK)] * (data[4] & 0x0F))
            return b""
        if ins in (desfire.CREATE_STD_DATA_FILE, desfire.CREATE_VALUE_FILE):
            return self._create_file(ins, data)
        if ins == desfire.WRITE_DATA:
            if len(data) < 7:
                raise _Status(0x7E)
            f = self._file(data[0], "data")
            self._allowed(f, WRITE, READ_WRITE)
            offset, length = int.from_bytes(data[1:4], "little"), int.from_bytes(data[4:7], "little")
            self._length(data[7:], length)
            if offset + length > f.size:
                raise _Status(0xBE)
            f.data[offset:offset + length] = data[7:]
            return b""
        if ins == desfire.READ_DATA:
            self._length(data, 7)
            f = self._file(data[0], "data")
            self._allowed(f, READ, READ_WRITE)
            offset, length = int.from_bytes(data[1:4], "little"), int.from_bytes(data[4:7], "little")
            length = length or f.size - offset
            if offset + length > f.size:
                raise _Status(0xBE)
            return [bytes(f.data[offset:offset + length])]
        if ins == desfire.GET_VALUE:
            self._length(data, 1)
            f = self._file(data[0], "value")
            self._allowed(f, READ, WRITE, READ_WRITE)
            return f.value.to_bytes(4, "little", signed=True)
        if ins in (desfire.CREDIT, desfire.DEBIT):
            self._length(data, 5)
            f = self._file(data[0], "value")
            if ins == desfire.CREDIT:
                self._allowed(f, READ_WRITE)
            else:
                self._allowed(f, READ, WRITE, READ_WRITE)
            amount = int.from_bytes(data[1:5], "little", signed=True)
            if amount < 0:
                raise _Status(0x9E)
            change = self._pending.get(data[0], 0) + (amount if ins == desfire.CREDIT else -amount)
            if not f.lower <= f.value + change <= f.upper:
                raise _Status(0xBE)
            self._pending[data[0]] = change
            return b""
        if ins == desfire.COMMIT_TRANSACTION:
            for number, change in self._pending.items():
                self._application().files[number].value += change
            self._pending = {}
            return b""
        if ins == ABORT_TRANSACTION:
            self._pending = {}
            return b""
        if ins == desfire.CHANGE_KEY:
            return self._change_key(data)
        raise _Status(0x1C)

    def _create_file(self, ins: int, data: bytes):
        app = self._application()
        if ins == desfire.CREATE_STD_DATA_FILE:
            self._length(data, 7)
            size = int.from_bytes(data[4:7], "little")
            if size > FILE_SIZE_MAX:
                raise _Status(0x0E)
            new = _File("data", access=int.from_bytes(data[2:4], "little"), size=size,
                        data=bytearray(size))
        else:
            self._length(data, 17)
            lower, upper, value = (int.from_bytes(data[i:i + 4], "little", signed=True) for i in (4, 8, 12))
            if not lower <= value <= upper:
                raise _Status(0x9E)
            new = _File("value", access=int.from_bytes(data[2:4], "little"), lower=lower,
                        upper=upper, value=value)
        if data[0] in app.files:
            raise _Status(0xDE)
        if data[0] > 31:
            raise _Status(0x9E)
        app.files[data[0]] = new
        return b""

    def _change_key(self, data: bytes) -> bytes:
        session = self._session
        if session is None:
            raise _Status(0xAE)
        app = self.applications[self._selected]
        if len(data) < 1 + BLOCK or (len(data) - 1) % BLOCK:
            raise _Status(0x7E)
        key_no, cryptogram = data[0], data[1:]
        if key_no >= len(app.keys):
            raise _Status(0x40)
        if session[2] not in (0, key_no):
            raise _Status(0x9D)                         # the master key, or the key itself
        plain = cbc_decrypt(session[0], session[1], cryptogram)
        session[1] = cryptogram[-BLOCK:]
        header = bytes([desfire.CHANGE_KEY, key_no])
        payload = plain[:BLOCK + 1]
        if plain[BLOCK + 1:BLOCK + 5] != crc32(header + payload):
            raise _Status(0x1E)
        if key_no == session[2]:
            app.keys[key_no] = payload[:BLOCK]
            self._session = None                        # its own key changed: the session ends
            return b""
        new_key = xor(payload[:BLOCK], app.keys[key_no])
        if plain[BLOCK + 5:BLOCK + 9] != crc32(new_key):
            raise _Status(0x1E)
        app.keys[key_no] = new_key
        return b""
