"""A simulated MIFARE DESFire EV1 card, for tests and demos: answers ISO-wrapped native
commands in a virtual reader (devices.vpcd). It keeps its memory when pulled out;
power-off forgets what is volatile (the selected application, an open transaction).

Supported: GetVersion (three frames), SelectApplication, CreateApplication,
CreateStdDataFile, CreateValueFile, WriteData, ReadData (answers longer than a frame
chained with AF), GetValue, Credit, Debit, CommitTransaction, AbortTransaction.
Authentication and access rights are not enforced yet (the next part of issue 6).
"""
from dataclasses import dataclass, field

from . import desfire

ATR = bytes.fromhex("3B8180018080")
FRAME_MAX = 59                  # data bytes in one answer frame
FILE_SIZE_MAX = 8 * 1024
ABORT_TRANSACTION = 0xA7
HARDWARE = bytes.fromhex("04010101001A05")
SOFTWARE = bytes.fromhex("04010101000405")
PICC = b"\x00\x00\x00"


class _Status(Exception):
    def __init__(self, status: int):
        self.status = status


@dataclass
class _File:
    kind: str                   # "data" or "value"
    size: int = 0
    data: bytearray = None
    lower: int = 0
    upper: int = 0
    value: int = 0


@dataclass
class _Application:
    key_settings: int
    keys: int
    files: dict = field(default_factory=dict)


class DesfireCard:
    def __init__(self, uid: bytes):
        if len(uid) != 7:
            raise ValueError("a DESFire UID is 7 bytes")
        self.uid = uid
        self.atr = ATR
        self.applications = {}
        self._selected = PICC
        self._pending = {}          # value file number -> change not yet committed
        self._frames = []           # the rest of a chained answer

    def power(self, on: bool):
        self._selected = PICC
        self._pending = {}
        self._frames = []

    # ---- ISO framing ------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        if len(apdu) < 5 or apdu[0] != desfire.WRAP_CLA or apdu[2:4] != b"\x00\x00":
            return b"\x6E\x00"                          # not a wrapped DESFire command
        ins = apdu[1]
        data = apdu[5:5 + apdu[4]] if len(apdu) > 5 else b""
        if ins == desfire.ADDITIONAL_FRAME and self._frames:
            return self._next_frame()
        self._frames = []
        try:
            answer = self._command(ins, bytes(data))
        except _Status as exc:
            return bytes([0x91, exc.status])
        if isinstance(answer, list):                    # several frames
            self._frames = answer
            return self._next_frame()
        return answer + b"\x91\x00"

    def _next_frame(self) -> bytes:
        frame = self._frames.pop(0)
        return frame + (b"\x91\xAF" if self._frames else b"\x91\x00")

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
            if data != PICC and data not in self.applications:
                raise _Status(0xA0)
            self._selected, self._pending = data, {}
            return b""
        if ins == desfire.CREATE_APPLICATION:
            self._length(data, 5)
            if self._selected != PICC:
                raise _Status(0x9D)
            if data[:3] in self.applications:
                raise _Status(0xDE)
            if not 1 <= data[4] & 0x0F <= 14:
                raise _Status(0x9E)
            self.applications[data[:3]] = _Application(data[3], data[4] & 0x0F)
            return b""
        if ins in (desfire.CREATE_STD_DATA_FILE, desfire.CREATE_VALUE_FILE):
            return self._create_file(ins, data)
        if ins == desfire.WRITE_DATA:
            if len(data) < 7:
                raise _Status(0x7E)
            f = self._file(data[0], "data")
            offset, length = int.from_bytes(data[1:4], "little"), int.from_bytes(data[4:7], "little")
            self._length(data[7:], length)
            if offset + length > f.size:
                raise _Status(0xBE)
            f.data[offset:offset + length] = data[7:]
            return b""
        if ins == desfire.READ_DATA:
            self._length(data, 7)
            f = self._file(data[0], "data")
            offset, length = int.from_bytes(data[1:4], "little"), int.from_bytes(data[4:7], "little")
            length = length or f.size - offset
            if offset + length > f.size:
                raise _Status(0xBE)
            chunk = bytes(f.data[offset:offset + length])
            return [chunk[i:i + FRAME_MAX] for i in range(0, len(chunk), FRAME_MAX)] or [b""]
        if ins == desfire.GET_VALUE:
            self._length(data, 1)
            return self._file(data[0], "value").value.to_bytes(4, "little", signed=True)
        if ins in (desfire.CREDIT, desfire.DEBIT):
            self._length(data, 5)
            f = self._file(data[0], "value")
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
        raise _Status(0x1C)

    def _create_file(self, ins: int, data: bytes):
        app = self._application()
        if ins == desfire.CREATE_STD_DATA_FILE:
            self._length(data, 7)
            size = int.from_bytes(data[4:7], "little")
            if size > FILE_SIZE_MAX:
                raise _Status(0x0E)
            new = _File("data", size=size, data=bytearray(size))
        else:
            self._length(data, 17)
            lower, upper, value = (int.from_bytes(data[i:i + 4], "little", signed=True) for i in (4, 8, 12))
            if not lower <= value <= upper:
                raise _Status(0x9E)
            new = _File("value", lower=lower, upper=upper, value=value)
        if data[0] in app.files:
            raise _Status(0xDE)
        if data[0] > 31:
            raise _Status(0x9E)
        app.files[data[0]] = new
        return b""
