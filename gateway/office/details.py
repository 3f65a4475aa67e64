"""What a terminal's request says beyond what the core decides it by (where it was made,
the masked card, fleet prompts, a sale's lines), as the cardgate.v1.TransactionDetails
the core keeps verbatim with the transaction (the core request's payload)."""
from cardgate.gateway.security.pan import mask
from cardgate.v1 import office_pb2


def details_of(m, pan_text: str = "") -> bytes:
    """The serialized TransactionDetails of a validated terminal message (an
    authorization, a loyalty sale): its acceptor, and its fleet data, lines and product
    codes where it has them; pan_text: the card number it presents (masked here), if any."""
    fields = m.DESCRIPTOR.fields_by_name
    details = office_pb2.TransactionDetails(acceptor=m.acceptor)
    if pan_text:
        details.masked_pan = mask(pan_text)
    if "fleet" in fields and m.HasField("fleet"):
        details.fleet.CopyFrom(m.fleet)
    if "lines" in fields:
        details.lines.extend(m.lines)
    if "product_codes" in fields:
        details.product_codes.extend(m.product_codes)
    return details.SerializeToString(deterministic=True)


def parse(data: bytes):
    """The TransactionDetails a transaction carries (empty if it carries none)."""
    return office_pb2.TransactionDetails.FromString(data)
