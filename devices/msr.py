"""MSR206-family magnetic stripe encoders over a serial port (9600 8N1, raw), with
pyserial. Every command starts with ESC; answers end with ESC and a status byte.

    reset            1B 61                    (no answer)
    test             1B 65                 -> 1B 79
    ISO write        1B 77 1B 73 1B 01 t1 1B 02 t2 1B 03 t3 3F 1C -> 1B status
    ISO read         1B 72                 -> 1B 73 1B 01 t1 1B 02 t2 1B 03 t3 3F 1C 1B status
    erase            1B 63 select          -> 1B status
    Hi-Co / Lo-Co    1B 78 / 1B 79         -> 1B status
    set BPI          1B 62 b               -> 1B status
    model            1B 74                 -> 1B model 53
    firmware         1B 76                 -> 1B version (8 characters)

Track data is written without sentinels (the encoder adds them) and read back with
them. Status bytes: 30 ok, 31 read/write error, 32 command format error, 34 invalid
command, 39 card swipe error in write mode.
"""
ESC, FS = b"\x1b", b"\x1c"
STATUS_OK = 0x30
STATUS_MEANINGS = {0x30: "ok", 0x31: "read/write error", 0x32: "command format error",
                   0x34: "invalid command", 0x39: "card swipe error in write mode"}
ERASE_SELECT = {(1,): 0b000, (2,): 0b010, (3,): 0b100, (1, 2): 0b011, (1, 3): 0b101,
                (2, 3): 0b110, (1, 2, 3): 0b111}
BPI_CODES = {(2, 75): 0x4B, (2, 210): 0xD2, (1, 75): 0xA0, (1, 210): 0xA1, (3, 75): 0xC0,
             (3, 210): 0xC1}
BAUD = 9600
FIRMWARE_LENGTH = 8             # e.g. "REVH1.03"


class MsrError(Exception):
    """The encoder answered a status other than ok, or not as the protocol says."""

    def __init__(self, message: str, status: int = None):
        super().__init__(message)
        self.status = status


def status_error(status: int, what: str) -> MsrError:
    meaning = STATUS_MEANINGS.get(status, "unknown status")
    return MsrError(f"{what}: the encoder answered {status:#04x} ({meaning})", status)


class Msr206:
    """One encoder on a serial port; `port` is a device path or an open pyserial port."""

    def __init__(self, port, timeout_s: float = 5.0):
        if isinstance(port, str):
            import serial

            port = serial.Serial(port, BAUD, bytesize=8, parity="N", stopbits=1,
                                 timeout=timeout_s, xonxoff=False, rtscts=False, dsrdtr=False)
        self.port = port

    def close(self):
        self.port.close()

    def _read(self, n: int, what: str) -> bytes:
        data = self.port.read(n)
        if len(data) != n:
            raise MsrError(f"{what}: no answer from the encoder (timed out after {len(data)} bytes)")
        return data

    def _status(self, what: str) -> None:
        answer = self._read(2, what)
        if answer[:1] != ESC:
            raise MsrError(f"{what}: expected ESC and a status, got {answer.hex()}")
        if answer[1] != STATUS_OK:
            raise status_error(answer[1], what)

    def _command(self, body: bytes, what: str) -> None:
        self.port.write(ESC + body)
        self.port.flush()
        self._status(what)

    def reset(self) -> None:
        self.port.write(ESC + b"a")
        self.port.flush()

    def test(self) -> None:
        """The communication test: raises unless the encoder answers ESC y."""
        self.port.write(ESC + b"e")
        self.port.flush()
        if self._read(2, "communication test") != ESC + b"y":
            raise MsrError("communication test: the encoder did not answer ESC y")

    def write_iso(self, track1: str = "", track2: str = "", track3: str = "") -> None:
        """Write the tracks' data (without sentinels) on the next card swiped."""
        self.port.write(ESC + b"w" + ESC + b"s" + ESC + b"\x01" + track1.encode("ascii") +
                        ESC + b"\x02" + track2.encode("ascii") + ESC + b"\x03" +
                        track3.encode("ascii") + b"?" + FS)
        self.port.flush()
        self._status("ISO write")

    def read_iso(self) -> tuple[str, str, str]:
        """The tracks of the next card swiped, with their sentinels ('' for a blank one)."""
        self.port.write(ESC + b"r")
        self.port.flush()
        data = bytearray()
        while not data.endswith(b"?" + FS):
            data += self._read(1, "ISO read")
            if len(data) > 512:
                raise MsrError("ISO read: the answer does not end")
        self._status("ISO read")
        if not data.startswith(ESC + b"s"):
            raise MsrError(f"ISO read: the answer does not start with ESC s: {bytes(data[:8]).hex()}")
        body = bytes(data[2:-2])
        tracks = []
        for n in (1, 2, 3):
            marker = ESC + bytes([n])
            start = body.find(marker)
            if start < 0:
                raise MsrError(f"ISO read: track {n} is missing from the answer")
            end = body.find(ESC, start + 2)
            tracks.append(body[start + 2:end if end >= 0 else len(body)].decode("ascii"))
        return tracks[0], tracks[1], tracks[2]

    def erase(self, tracks=(1, 2, 3)) -> None:
        select = ERASE_SELECT.get(tuple(sorted(tracks)))
        if select is None:
            raise MsrError(f"erase: tracks must be some of 1, 2, 3, got {tracks}")
        self._command(b"c" + bytes([select]), "erase")

    def set_hi_co(self) -> None:
        self._command(b"x", "set Hi-Co")

    def set_lo_co(self) -> None:
        self._command(b"y", "set Lo-Co")

    def set_bpi(self, track: int, bpi: int) -> None:
        code = BPI_CODES.get((track, bpi))
        if code is None:
            raise MsrError(f"set BPI: track {track} at {bpi} bpi is not a setting the encoder has")
        self._command(b"b" + bytes([code]), "set BPI")

    def model(self) -> str:
        self.port.write(ESC + b"t")
        self.port.flush()
        answer = self._read(3, "model")
        if answer[:1] != ESC or answer[2:] != b"S":
            raise MsrError(f"model: unexpected answer {answer.hex()}")
        return chr(answer[1])

    def firmware(self) -> str:
        self.port.write(ESC + b"v")
        self.port.flush()
        answer = self._read(1 + FIRMWARE_LENGTH, "firmware")
        if answer[:1] != ESC:
            raise MsrError("firmware: the answer does not start with ESC")
        return answer[1:].decode("ascii", "replace")
