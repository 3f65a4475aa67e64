"""A simulated card in a virtual reader of pcscd, through the vsmartcard vpcd driver.

vpcd listens on TCP 35963 for reader "Virtual PCD 00 00" and on 35964 for "Virtual PCD
00 01". The card connects to it; each message either way is a 2-byte big-endian length
and its payload. A 1-byte payload from vpcd of 00 (power off), 01 (power on), 02
(reset) or 04 (get ATR, answered with the ATR) is control; anything else is a frame for
the card (a native DESFire command can be one byte: GetVersion is 60), answered with the
card's response. Each answer goes out in one write with TCP_NODELAY set, and the
card acknowledges at once (TCP_QUICKACK): otherwise vpcd's two writes per message meet
a delayed ACK and every APDU takes about 40 ms.

The card object needs `atr` (bytes), `process(apdu) -> response` and `power(on)`;
`process` answering None pulls the card out there and then (a test's card that leaves
the reader in the middle of an exchange).
Inserting connects; `remove()` disconnects, as a card pulled out of the reader.
`insert()` inserts and waits until pcscd sees the card; after a card was pulled out
mid-exchange, pcscd may miss the next insertion, so it pulls the card and inserts it
again until pcscd sees it.
"""
import socket
import struct
import threading
import time

READER_PORTS = {0: 35963, 1: 35964}
READER_NAMES = {0: "Virtual PCD 00 00", 1: "Virtual PCD 00 01"}
POWER_OFF, POWER_ON, RESET, GET_ATR = 0, 1, 2, 4
CONTROL = (POWER_OFF, POWER_ON, RESET, GET_ATR)


class VirtualCardSlot:
    """One simulated card inserted into virtual reader `reader` (0 or 1) until removed."""

    def __init__(self, card, reader: int = 0, host: str = "127.0.0.1"):
        self.card = card
        self.reader = reader
        self.sock = socket.create_connection((host, READER_PORTS[reader]), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(None)
        self.apdus = 0
        self._thread = threading.Thread(target=self._serve, name=f"vpcd-card-{reader}", daemon=True)
        self._thread.start()

    def remove(self):
        """Pull the card out: the reader sees it gone at once."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(timeout=5)

    def _receive(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("vpcd closed the connection")
            data += chunk
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return data

    def _send(self, payload: bytes):
        self.sock.sendall(struct.pack(">H", len(payload)) + payload)

    def _serve(self):
        try:
            while True:
                (length,) = struct.unpack(">H", self._receive(2))
                message = self._receive(length)
                if length == 1 and message[0] in CONTROL:
                    if message[0] == GET_ATR:
                        self._send(self.card.atr)
                    elif message[0] in (POWER_ON, RESET):
                        self.card.power(True)
                    elif message[0] == POWER_OFF:
                        self.card.power(False)
                    continue
                self.apdus += 1
                answer = self.card.process(message)
                if answer is None:                  # the card left the reader mid-exchange
                    self.sock.shutdown(socket.SHUT_RDWR)
                    return
                self._send(answer)
        except (OSError, ConnectionError, struct.error):
            return                                  # removed, or vpcd went away


def insert(card, reader: int = 0, timeout_s: float = 15.0, settle_s: float = 2.0, connect: bool = True):
    """(VirtualCardSlot, devices.pcsc.Connection) of the card, once pcscd sees it; with
    connect=False the connection is None and the card is left alone (a feeder that
    only puts cards in, for an encoder in another process, must not reset them)."""
    from . import pcsc

    states = None if connect else pcsc.ReaderStates()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            slot = VirtualCardSlot(card, reader)
            tried_until = min(time.monotonic() + settle_s, deadline)
            while time.monotonic() < tried_until:
                try:
                    if states is not None:
                        if READER_NAMES[reader] in states.present([READER_NAMES[reader]]):
                            return slot, None
                    else:
                        return slot, pcsc.Connection(READER_NAMES[reader])
                except pcsc.PcscError:
                    pass
                time.sleep(0.05)
            slot.remove()
            if time.monotonic() >= deadline:
                raise pcsc.PcscError(f"pcscd did not see the card in {READER_NAMES[reader]} "
                                     f"within {timeout_s:g} s")
    finally:
        if states is not None:
            states.close()
