"""What a terminal's request says beyond what the core decides it by (where it was made,
the masked card, fleet prompts, a sale's lines), as the cardgate.v1.TransactionDetails
the core keeps verbatim with the transaction (the core request's payload)."""
from cardgate.gateway.security.pan import mask
from cardgate.v1 import office_pb2

# Which fields of each kind of authorization message describe it (ForecourtOperation's names).
_FLEET_KINDS = ("purchase", "preauthorize")
_LINE_KINDS = ("purchase", "complete")


def details_of(kind: str, m, pan_text: str = "") -> bytes:
    """The serialized TransactionDetails of a validated authorization message of `kind`;
    pan_text: the card number it presents (masked here), if any."""
    details = office_pb2.TransactionDetails(acceptor=m.acceptor)
    if pan_text:
        details.masked_pan = mask(pan_text)
    if kind in _FLEET_KINDS and m.HasField("fleet"):
        details.fleet.CopyFrom(m.fleet)
    if kind in _LINE_KINDS:
        details.lines.extend(m.lines)
    if kind == "preauthorize":
        details.product_codes.extend(m.product_codes)
    return details.SerializeToString(deterministic=True)


def parse(data: bytes):
    """The TransactionDetails a transaction carries (empty if it carries none)."""
    return office_pb2.TransactionDetails.FromString(data)
