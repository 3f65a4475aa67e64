"""One ISO 8583 message in, its answer out: decoded (codec), made the core request gRPC
would make (translate), applied through the same Operations, answered with field 39 for
the core's result, and counted in the metrics and the request log as a gRPC call is (its
"rpc" is ISO8583/<type>). Nothing here reads a socket: the listener frames and sends."""
import logging
import time

from cardgate.fastcore.records import Result
from cardgate.gateway import validation
from cardgate.gateway.api.operations import RequestIdReused
from cardgate.gateway.iso8583 import codec, response_codes, translate
from cardgate.gateway.iso8583.codec import FormatError
from cardgate.gateway.ops.logs import log_request
from cardgate.gateway.security.pan import mask_pans_in
from cardgate.gateway.security.pin_blocks import NoPinKey, PinBlockError
from cardgate.gateway.store.writer import WriterError

log = logging.getLogger("cardgate.iso8583")
TYPES_COUNTED = ("0100", "0200", "0220", "0221", "0400", "0420", "0421", "0800",
                 "1100", "1200", "1220", "1221", "1420", "1421", "1804")


async def respond(ops, data: bytes, caller, profile: str = "1987", metrics=None,
                  refused=None) -> bytes:
    """The answer's bytes to one message from `caller` (a terminal's pki.Identity; None
    in the loopback development mode). One that cannot be read is answered format error
    (30 / 904), echoing what identifies it as far as it was read (its type, else a
    network management answer). refused: (code pair, outcome) to answer with instead of
    applying it (the terminal over its rate: 96 / 909, send it again later)."""
    started = time.perf_counter()
    merchant_id, outlet_id = (caller.merchant_id, caller.outlet_id) if caller else ("", "")
    message, outcome = None, "FORMAT_ERROR"
    try:
        fields = codec.decode(data, profile)
    except FormatError as exc:
        log.warning("ISO 8583 message refused (%s): %s", profile, mask_pans_in(str(exc)))
        network = translate.PROFILES[profile]
        fields = {"t": exc.mti or network.version + network.network_type, **exc.echo}
        answer = translate.answer(fields, response_codes.code(response_codes.FORMAT_ERROR,
                                                              profile))
    else:
        merchant_named = fields.get("42", "").strip()
        if refused is None and caller is not None and merchant_named and \
                merchant_named != caller.merchant_id:
            log.warning("ISO 8583 %s refused: field 42 names another merchant than %s",
                        fields["t"], caller.describe())
            refused = response_codes.NOT_PERMITTED_TO_TERMINAL, "PERMISSION_DENIED"
        if refused is not None:
            answer, outcome = translate.answer(fields, response_codes.code(refused[0],
                                                                           profile)), refused[1]
        else:
            answer, message, outcome = await _answer(ops, fields, merchant_id, outlet_id,
                                                     profile)
    rpc = "ISO8583/" + (fields["t"] if fields["t"] in TYPES_COUNTED else "other")
    if metrics is not None:
        metrics.answered(rpc, outcome, started)
    log_request(caller, rpc, message, outcome, started)
    return codec.encode(answer, profile)


async def _answer(ops, fields, merchant_id, outlet_id, profile):
    """(answer fields, the cardgate.v1 request or None, outcome as the metrics name it)."""
    message = None
    try:
        kind, message = translate.operation(fields, merchant_id, outlet_id, profile)
        if kind is None:                            # network management
            return translate.answer(fields, response_codes.code(
                response_codes.APPROVED, profile)), None, "answered"
        pin_of = pin_block(ops, fields, kind, message, merchant_id)
        reply = await ops.submit_one_async(ops.pack_operation(kind, message, pin_of),
                                           message.request_id)
    except NoPinKey as exc:
        log.warning("ISO 8583 %s refused: %s", fields["t"], exc)
        pair, outcome = response_codes.NOT_PERMITTED_TO_TERMINAL, "PERMISSION_DENIED"
    except PinBlockError as exc:
        log.warning("ISO 8583 %s refused: %s", fields["t"], exc)
        pair, outcome = response_codes.PIN_UNREADABLE, "INVALID_ARGUMENT"
    except (FormatError, validation.InvalidArgument) as exc:
        log.warning("ISO 8583 %s refused: %s", fields["t"], mask_pans_in(str(exc)))
        pair, outcome = response_codes.FORMAT_ERROR, "INVALID_ARGUMENT"
    except RequestIdReused:
        pair, outcome = response_codes.DUPLICATE, "ALREADY_EXISTS"
    except WriterError as exc:
        log.error("ISO 8583 %s not answered by the core: %s", fields["t"], exc)
        pair, outcome = response_codes.SYSTEM_MALFUNCTION, "UNAVAILABLE"
    else:
        return (translate.answer(fields, response_codes.response_code(reply.result, profile),
                                 reply), message, "RESULT_CODE_" + Result(reply.result).name)
    return translate.answer(fields, response_codes.code(pair, profile)), message, outcome


def pin_block(ops, fields, kind, message, merchant_id):
    """None without field 52; else card key -> the verifier of its PIN block, deciphered
    under the terminal's PIN key (pin_blocks: the clear PIN stays there), for packing."""
    block = fields.get("52")
    if not block:
        return None
    if kind not in ("purchase", "preauthorize") or \
            (kind == "purchase" and message.HasField("offline")):
        raise FormatError(f"field 52: a PIN block comes with a purchase or a "
                          f"pre-authorization, not a {fields['t']}", "52", fields["t"])
    if len(block) not in (16, 32):
        raise FormatError("field 52: a PIN block is 16 (format 0) or 32 (format 4) "
                          "hexadecimal characters", "52", fields["t"])
    enciphered = bytes.fromhex(block)
    return lambda card_key: ops.store.terminal_pin_keys.verifier(
        merchant_id, fields["41"], enciphered, message.pan, card_key, ops.store.pin_key)
