"""PC/SC readers through pcscd, with pyscard: list readers, watch cards come and go,
connect and exchange APDUs. Errors say what is wrong in words: no pcscd, no such
reader, no card, the card removed mid-exchange, an unexpected status word. The APDU
trace (logger cardgate.devices.pcsc, DEBUG) shows headers, lengths and status words,
never the data, which may hold card numbers or keys."""
import logging
import threading
import time

log = logging.getLogger("cardgate.devices.pcsc")


class PcscError(Exception):
    """A reader, card or pcscd problem, said plainly."""


class CardRemoved(PcscError):
    """The card left the reader during an exchange."""


def _pyscard():
    try:
        from smartcard import Exceptions, System
        from smartcard.pcsc.PCSCExceptions import EstablishContextException, ListReadersException
    except ImportError as exc:                 # pragma: no cover - the extra is not installed
        raise PcscError("pyscard is not installed: pip install 'cardgate[devices]'") from exc
    return System, Exceptions, (EstablishContextException, ListReadersException)


def readers() -> list[str]:
    """Names of the readers pcscd knows."""
    system, _, context_errors = _pyscard()
    try:
        return [str(r) for r in system.readers()]
    except context_errors as exc:
        raise PcscError(f"no pcscd answers (is the PC/SC daemon running?): {exc}") from exc


def wait_for_readers(names, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            present = readers()
        except PcscError:
            present = []
        if all(name in present for name in names):
            return
        if time.monotonic() > deadline:
            raise PcscError(f"readers {sorted(set(names) - set(present))} did not appear in "
                            f"{timeout_s:g} s (present: {present})")
        time.sleep(0.05)


def _trace(apdu: bytes, answer: bytes, reader: str):
    if log.isEnabledFor(logging.DEBUG):
        header = apdu[:4].hex(" ").upper()
        log.debug("%s > %s +%d bytes | < %d bytes SW %s", reader, header, max(len(apdu) - 4, 0),
                  max(len(answer) - 2, 0), answer[-2:].hex().upper())


class Connection:
    """A card in one reader."""

    def __init__(self, reader_name: str):
        system, exceptions, _ = _pyscard()
        self._exceptions = exceptions
        matches = [r for r in system.readers() if str(r) == reader_name]
        if not matches:
            raise PcscError(f"no reader named {reader_name!r} (present: {readers()})")
        self.reader = reader_name
        self._connection = matches[0].createConnection()
        try:
            self._connection.connect()
        except exceptions.NoCardException as exc:
            raise PcscError(f"no card in {reader_name}") from exc
        except exceptions.CardConnectionException as exc:
            raise PcscError(f"cannot reach the card in {reader_name}: {exc}") from exc

    @property
    def atr(self) -> bytes:
        return bytes(self._connection.getATR())

    def transmit(self, frame: bytes) -> bytes:
        """The card's whole answer to a frame: an APDU's ends with its two status bytes;
        a native DESFire frame's may be one byte (its status), which is why this goes to
        SCardTransmit itself rather than through pyscard's APDU view."""
        from smartcard.pcsc.PCSCCardConnection import translateprotocolheader
        from smartcard.scard import SCARD_S_SUCCESS, SCardGetErrorMessage, SCardTransmit

        c = self._connection.component            # pyscard's PC/SC connection under its decorator
        if c.hcard is None:
            raise CardRemoved(f"no connection to the card in {self.reader}")
        hresult, answer = SCardTransmit(c.hcard, translateprotocolheader(c.getProtocol()), list(frame))
        if hresult != SCARD_S_SUCCESS or not answer:
            reason = SCardGetErrorMessage(hresult) if hresult != SCARD_S_SUCCESS else "no answer"
            raise CardRemoved(f"the card left {self.reader} during an exchange: {reason}")
        answer = bytes(answer)
        _trace(frame, answer, self.reader)
        return answer

    def close(self):
        try:
            self._connection.disconnect()
        except self._exceptions.CardConnectionException:
            pass                                     # already gone with its card


def check_status(answer: bytes, expected=(0x9000,)) -> bytes:
    """The data of an answer whose status word is one expected, else PcscError."""
    if len(answer) < 2:
        raise PcscError("the card answered without a status word")
    sw = int.from_bytes(answer[-2:], "big")
    if sw not in expected:
        raise PcscError(f"unexpected status word {sw:04X} (expected "
                        f"{', '.join(f'{e:04X}' for e in expected)})")
    return answer[:-2]


class ReaderStates:
    """Which readers hold a card, asked of pcscd (SCardGetStatusChange) without
    connecting to any card."""

    def __init__(self):
        from smartcard import scard

        self._scard = scard
        hresult, self._context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise PcscError(f"no pcscd answers (is the PC/SC daemon running?): "
                            f"{scard.SCardGetErrorMessage(hresult)}")

    def names(self) -> list[str]:
        hresult, names = self._scard.SCardListReaders(self._context, [])
        if hresult != self._scard.SCARD_S_SUCCESS:
            return []                                    # none (pcscd says "no readers")
        return list(names)

    def present(self, names, wait_ms: int = 0) -> set:
        """The readers of `names` holding a card (waiting up to wait_ms for a change)."""
        scard = self._scard
        hresult, states = scard.SCardGetStatusChange(
            self._context, wait_ms, [(name, scard.SCARD_STATE_UNAWARE) for name in names])
        if hresult == scard.SCARD_E_UNKNOWN_READER:
            raise PcscError(f"no reader named among {list(names)} (present: {self.names()})")
        if hresult not in (scard.SCARD_S_SUCCESS, scard.SCARD_E_TIMEOUT):
            raise PcscError(f"pcscd cannot say what the readers hold: {scard.SCardGetErrorMessage(hresult)}")
        return {name for name, state, _ in states if state & scard.SCARD_STATE_PRESENT}

    def close(self):
        self._scard.SCardReleaseContext(self._context)


def watch(on_insert, on_remove, poll_ms: int = 100):
    """Call on_insert(reader) / on_remove(reader) as cards come and go (readers that
    appear later included), from a thread of its own; returns a function that stops it.
    It waits in SCardGetStatusChange for at most poll_ms at a time, so it stops at once
    and a pcscd that goes away only ends it."""
    stopping = threading.Event()

    def run():
        try:
            states = ReaderStates()
        except PcscError as exc:
            log.warning("card watch: %s", exc)
            return
        present = {}
        try:
            while not stopping.is_set():
                names = states.names()
                try:
                    holding = states.present(names, poll_ms) if names else set()
                except PcscError:
                    holding = None
                if holding is None or not names:
                    stopping.wait(poll_ms / 1000)
                    continue
                for name in names:
                    now = name in holding
                    if now != present.get(name, False):
                        (on_insert if now else on_remove)(name)
                    present[name] = now
                stopping.wait(poll_ms / 1000)
        finally:
            states.close()

    thread = threading.Thread(target=run, name="pcsc-watch", daemon=True)
    thread.start()

    def stop():
        stopping.set()
        thread.join(timeout=5)
    return stop
