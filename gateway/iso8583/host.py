"""One ISO 8583 message in, its answer out: decoded (codec), made the core request gRPC
would make (translate), applied through the same Operations, answered with field 39 for
the core's result. Nothing here reads a socket: the listener frames and sends."""
import logging

from cardgate.gateway import validation
from cardgate.gateway.api.operations import RequestIdReused
from cardgate.gateway.iso8583 import codec, response_codes, translate
from cardgate.gateway.iso8583.codec import FormatError
from cardgate.gateway.security.pan import mask_pans_in
from cardgate.gateway.store.writer import WriterError

log = logging.getLogger("cardgate.iso8583")


async def respond(ops, data: bytes, merchant_id: str, outlet_id: str,
                  profile: str = "1987") -> bytes:
    """The answer's bytes to one message. One that cannot be read is answered format
    error (30 / 904), echoing what identifies it as far as it was read (its type, else
    an 0810)."""
    try:
        fields = codec.decode(data, profile)
    except FormatError as exc:
        log.warning("ISO 8583 message refused (%s): %s", profile, mask_pans_in(str(exc)))
        fields = {"t": exc.mti or "0800", **exc.echo}
        return codec.encode(translate.answer(
            fields, response_codes.code(response_codes.FORMAT_ERROR, profile)), profile)
    return codec.encode(await _answer(ops, fields, merchant_id, outlet_id, profile), profile)


async def _answer(ops, fields, merchant_id, outlet_id, profile) -> dict:
    try:
        kind, message = translate.operation(fields, merchant_id, outlet_id)
        if kind is None:                            # network management
            return translate.answer(fields, response_codes.code(response_codes.APPROVED, profile))
        reply = await ops.submit_one_async(ops.pack_operation(kind, message), message.request_id)
    except (FormatError, validation.InvalidArgument) as exc:
        log.warning("ISO 8583 %s refused: %s", fields["t"], mask_pans_in(str(exc)))
        return translate.answer(fields, response_codes.code(response_codes.FORMAT_ERROR, profile))
    except RequestIdReused:
        return translate.answer(fields, response_codes.code(response_codes.DUPLICATE, profile))
    except WriterError as exc:
        log.error("ISO 8583 %s not answered by the core: %s", fields["t"], exc)
        return translate.answer(fields, response_codes.code(response_codes.SYSTEM_MALFUNCTION, profile))
    return translate.answer(fields, response_codes.response_code(reply.result, profile), reply)

