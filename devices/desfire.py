"""MIFARE DESFire EV1+ native commands, ISO 7816-4 wrapped: a command is sent as
`90 INS 00 00 Lc data 00` and answered `data 91 SW2`, SW2 being the DESFire status.
Status AF means more data follows: the host asks for it with INS AF until another
status ends the exchange. Any status other than 00 (and AF while chaining) is an
error, raised as DesfireError naming it.

After an AES authentication (EV1), every command and answer moves one IV along: the
host MACs each command it sends (CMAC with the session key, starting at the IV) and
checks the 8-byte CMAC the card appends to each answer; ChangeKey travels enciphered.
An error ends the session, as on the card.

`transmit` is any callable that sends an APDU and returns the card's answer (a PC/SC
connection's, or a simulated card's)."""
import os

from .desfire_crypto import (BLOCK, cbc_decrypt, cbc_encrypt, cmac, crc32, pad_zeros,
                             rotate_left, session_key, xor)
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

# Instruction codes of the native commands this module sends.
GET_VERSION, SELECT_APPLICATION, AUTHENTICATE_AES = 0x60, 0x5A, 0xAA
CREATE_APPLICATION, CREATE_STD_DATA_FILE, CREATE_VALUE_FILE = 0xCA, 0xCD, 0xCC
WRITE_DATA, READ_DATA, CHANGE_KEY = 0x3D, 0xBD, 0xC4
CREDIT, DEBIT, GET_VALUE, COMMIT_TRANSACTION = 0x0C, 0xDC, 0x6C, 0xC7
FRAMES_MAX = 64                  # additional frames accepted in one answer


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


MAC_LENGTH = 8


class Desfire:
    def __init__(self, transmit):
        self.transmit = transmit
        self.session = None         # [session key, IV] after an AES authentication
        self.key_no = None          # the key it authenticated with

    def exchange(self, ins: int, data: bytes = b"", what: str = "", wire: bytes = None) -> bytes:
        """Send a command, collect every additional frame, raise on an error status;
        in a session, MAC the command and check the answer's MAC. `wire`: the bytes to
        send instead of data (an enciphered command)."""
        if self.session is not None and wire is None:
            self.session[1] = cmac(self.session[0], bytes([ins]) + data, self.session[1])
        answer, status = unwrap(self.transmit(wrap(ins, data if wire is None else wire)))
        frames = 0
        while status == ADDITIONAL_FRAME:
            frames += 1
            if frames > FRAMES_MAX:
                raise DesfireError(f"{what or hex(ins)}: the card keeps sending frames")
            more, status = unwrap(self.transmit(wrap(ADDITIONAL_FRAME)))
            answer += more
        if status != OK:
            self.session = None
            raise DesfireError(f"{what or f'command {ins:#04x}'}: {status_name(status)} "
                               f"({status:#04x})", status)
        if self.session is not None:
            answer, mac = answer[:-MAC_LENGTH], answer[-MAC_LENGTH:]
            expected = cmac(self.session[0], answer + bytes([status]), self.session[1])
            if len(mac) != MAC_LENGTH or mac != expected[:MAC_LENGTH]:
                self.session = None
                raise DesfireError(f"{what or hex(ins)}: the answer's MAC is wrong (not the "
                                   "card we authenticated with, or altered)", 0x1E)
            self.session[1] = expected
        return answer

    def authenticate_aes(self, key_no: int, key: bytes) -> None:
        """EV1 AES authentication with key `key_no` of the selected application (or the
        card): each side proves it holds the key; a session key follows."""
        self.session = None
        ek_rnd_b, status = unwrap(self.transmit(wrap(AUTHENTICATE_AES, bytes([key_no]))))
        if status != ADDITIONAL_FRAME or len(ek_rnd_b) != BLOCK:
            raise DesfireError(f"AuthenticateAES: {status_name(status)} ({status:#04x})", status)
        rnd_b = cbc_decrypt(key, bytes(BLOCK), ek_rnd_b)
        rnd_a = os.urandom(BLOCK)
        token = cbc_encrypt(key, ek_rnd_b, rnd_a + rotate_left(rnd_b))
        proof, status = unwrap(self.transmit(wrap(ADDITIONAL_FRAME, token)))
        if status != OK:
            raise DesfireError(f"AuthenticateAES: {status_name(status)} ({status:#04x}): the "
                               "card does not hold this key", status)
        if len(proof) != BLOCK or cbc_decrypt(key, token[-BLOCK:], proof) != rotate_left(rnd_a):
            raise DesfireError("AuthenticateAES: the card could not prove it holds the key", 0xAE)
        self.session = [session_key(rnd_a, rnd_b), bytes(BLOCK)]
        self.key_no = key_no

    def change_key(self, key_no: int, new_key: bytes, old_key: bytes = None, version: int = 0) -> None:
        """Change key `key_no` of the selected application (enciphered, in a session). The
        key the session authenticated with needs only the new key, and ends the session;
        another key needs its old value too."""
        if self.session is None:
            raise DesfireError("ChangeKey: authenticate first")
        header = bytes([CHANGE_KEY, key_no])
        if key_no == self.key_no:
            payload = new_key + bytes([version])
            plain = pad_zeros(payload + crc32(header + payload))
        else:
            if old_key is None:
                raise ValueError("changing another key than the session's needs its old value")
            payload = xor(new_key, old_key) + bytes([version])
            plain = pad_zeros(payload + crc32(header + payload) + crc32(new_key))
        cryptogram = cbc_encrypt(self.session[0], self.session[1], plain)
        self.session[1] = cryptogram[-BLOCK:]
        if key_no == self.key_no:
            answer, status = unwrap(self.transmit(wrap(CHANGE_KEY, bytes([key_no]) + cryptogram)))
            self.session = None              # the key it stood on changed: no session left
            if status != OK:
                raise DesfireError(f"ChangeKey: {status_name(status)} ({status:#04x})", status)
            return
        self.exchange(CHANGE_KEY, what="ChangeKey", wire=bytes([key_no]) + cryptogram)

    def get_version(self) -> bytes:
        """28 bytes: hardware and software version, then UID (7), batch (5), week, year."""
        return self.exchange(GET_VERSION, what="GetVersion")

    def select_application(self, aid: bytes) -> None:
        """Selecting ends any authentication, on the card as here."""
        self.session = None
        self.exchange(SELECT_APPLICATION, _aid(aid), "SelectApplication")

    def create_application(self, aid: bytes, key_settings: int, keys: int) -> None:
        """An application whose keys are AES (flag 0x80 on the number of keys)."""
        if not 1 <= keys <= 14:
            raise ValueError("an application has 1 to 14 keys")
        self.exchange(CREATE_APPLICATION, _aid(aid) + bytes([key_settings, 0x80 | keys]),
                      "CreateApplication")

    def create_std_data_file(self, file_no: int, communication: int, access: int, size: int) -> None:
        self.exchange(CREATE_STD_DATA_FILE, bytes([file_no, communication]) + access.to_bytes(2, "little")
                      + size.to_bytes(3, "little"), "CreateStdDataFile")

    def create_value_file(self, file_no: int, communication: int, access: int, lower: int,
                          upper: int, value: int, limited_credit: bool = False) -> None:
        self.exchange(CREATE_VALUE_FILE, bytes([file_no, communication]) + access.to_bytes(2, "little")
                      + b"".join(v.to_bytes(4, "little", signed=True) for v in (lower, upper, value))
                      + bytes([1 if limited_credit else 0]), "CreateValueFile")

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
