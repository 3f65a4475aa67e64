"""ISO 8583 over TCP: each message behind a 2-byte big-endian length (network byte order,
the length of what follows, not counting itself)."""
import asyncio

from cardgate.gateway.iso8583.codec import FormatError

LENGTH_BYTES = 2
MESSAGE_BYTES_MAX = 4096         # larger announced lengths close the connection
MESSAGE_TIMEOUT_S = 5.0          # a message begun must be whole within this long


def frame(message: bytes) -> bytes:
    if not 0 < len(message) <= MESSAGE_BYTES_MAX:
        raise ValueError(f"a message of {len(message)} bytes cannot be framed "
                         f"(1 to {MESSAGE_BYTES_MAX})")
    return len(message).to_bytes(LENGTH_BYTES, "big") + message


async def read_message(reader: asyncio.StreamReader, timeout_s: float = MESSAGE_TIMEOUT_S):
    """The next message, or None when the peer closed the connection between messages.
    FormatError: a length of 0 or past MESSAGE_BYTES_MAX, or a message cut short: the
    connection ended inside it, or its bytes did not all come within timeout_s of its
    length (the connection can no longer be read in step: the caller closes it)."""
    try:
        head = await reader.readexactly(LENGTH_BYTES)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FormatError("the connection ended inside a length prefix") from None
    size = int.from_bytes(head, "big")
    if not 0 < size <= MESSAGE_BYTES_MAX:
        raise FormatError(f"a length prefix of {size} (1 to {MESSAGE_BYTES_MAX} accepted)")
    try:
        return await asyncio.wait_for(reader.readexactly(size), timeout_s)
    except asyncio.IncompleteReadError as exc:
        raise FormatError(f"the connection ended after {len(exc.partial)} of the {size} bytes "
                          "announced") from None
    except asyncio.TimeoutError:
        raise FormatError(f"the {size} bytes announced did not come within {timeout_s:g} s") \
            from None
