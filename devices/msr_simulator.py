"""An MSR206 encoder simulated on a pseudo-terminal: what a card was written with is
kept, so that reading the card returns it. For tests and demos (`MsrSimulator().path`
is the serial port to open). Its answers follow the real encoder's status codes:
30 ok, 31 read/write error (a blank card read, data the stripe cannot hold), 32 command
format error, 34 invalid command, 39 card swipe error in write mode (`fail_next_swipe`).
"""
import os
import pty
import select
import threading
import tty

from .msr import BPI_CODES, ERASE_SELECT, ESC, FS

OK, RW_ERROR, FORMAT_ERROR, INVALID, SWIPE_ERROR = 0x30, 0x31, 0x32, 0x34, 0x39
TRACK_SETS = {1: (0x20, 0x5F, "%?", 76), 2: (0x30, 0x3F, ";?", 37), 3: (0x30, 0x3F, ";?", 104)}
SENTINELS = {1: ("%", "?"), 2: (";", "?"), 3: (";", "?")}
MODEL = b"3"
FIRMWARE = b"REVH1.03"


class MsrSimulator:
    """Runs on its own thread until close(); `tracks` is the card in the slot."""

    def __init__(self):
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.tracks = {1: "", 2: "", 3: ""}
        self.coercivity = "hi"
        self.fail_next_swipe = False
        self.writes = 0
        self._buffer = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="msr-simulator", daemon=True)
        self._thread.start()

    def take_card(self) -> dict:
        """The card in the slot ({track: data}) taken out; a blank one takes its place."""
        card, self.tracks = self.tracks, {1: "", 2: "", 3: ""}
        return card

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)

    # ---- the device ---------------------------------------------------------------

    def _answer(self, data: bytes):
        os.write(self.master, data)

    def _serve(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                self._buffer += os.read(self.master, 1024)
            except OSError:
                return
            while self._buffer and self._handle():
                pass

    def _handle(self) -> bool:
        """Act on the first whole command in the buffer; False until one is whole."""
        buf = self._buffer
        if buf[0] != ESC[0]:
            del buf[0]                                  # noise before a command
            self._answer(ESC + bytes([FORMAT_ERROR]))
            return True
        if len(buf) < 2:
            return False
        command = buf[1]
        if command == ord("w"):
            end = buf.find(b"?" + FS)
            if end < 0:
                return False
            frame = bytes(buf[:end + 2])
            del buf[:end + 2]
            self._answer(ESC + bytes([self._write(frame)]))
            return True
        if command in (ord("c"), ord("b")):
            if len(buf) < 3:
                return False
            argument = buf[2]
            del buf[:3]
            valid = argument in ERASE_SELECT.values() if command == ord("c") else argument in BPI_CODES.values()
            if valid and command == ord("c"):
                erased = next(tracks for tracks, code in ERASE_SELECT.items() if code == argument)
                for n in erased:
                    self.tracks[n] = ""
            self._answer(ESC + bytes([OK if valid else FORMAT_ERROR]))
            return True
        del buf[:2]
        if command == ord("a"):
            self.fail_next_swipe = False                # reset: nothing to answer
        elif command == ord("e"):
            self._answer(ESC + b"y")
        elif command == ord("r"):
            self._read()
        elif command in (ord("x"), ord("y")):
            self.coercivity = "hi" if command == ord("x") else "lo"
            self._answer(ESC + bytes([OK]))
        elif command == ord("t"):
            self._answer(ESC + MODEL + b"S")
        elif command == ord("v"):
            self._answer(ESC + FIRMWARE)
        else:
            self._answer(ESC + bytes([INVALID]))
        return True

    def _write(self, frame: bytes) -> int:
        if not frame.startswith(ESC + b"w" + ESC + b"s" + ESC + b"\x01"):
            return FORMAT_ERROR
        body = frame[6:-2]
        parts = body.split(ESC)
        if len(parts) != 3 or parts[1][:1] != b"\x02" or parts[2][:1] != b"\x03":
            return FORMAT_ERROR
        data = {1: parts[0], 2: parts[1][1:], 3: parts[2][1:]}
        for n, raw in data.items():
            low, high, banned, limit = TRACK_SETS[n]
            text = raw.decode("latin-1")
            if len(text) > limit or any(not low <= ord(c) <= high or c in banned for c in text):
                return RW_ERROR                         # the stripe cannot hold it
        if self.fail_next_swipe:
            self.fail_next_swipe = False
            return SWIPE_ERROR
        for n, raw in data.items():
            start, end = SENTINELS[n]
            self.tracks[n] = start + raw.decode("ascii") + end if raw else ""
        self.writes += 1
        return OK

    def _read(self):
        answer = ESC + b"s" + b"".join(ESC + bytes([n]) + self.tracks[n].encode("ascii")
                                       for n in (1, 2, 3)) + b"?" + FS
        blank = not any(self.tracks.values())
        self._answer(answer + ESC + bytes([RW_ERROR if blank else OK]))
