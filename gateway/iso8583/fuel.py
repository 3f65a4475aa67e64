"""Field 63, private: a forecourt's fuel and fleet data, as subfields each written tag (2
letters), length (2 digits), value (docs/iso8583.md):

  PL  a product line: product code (3 digits), volume in ml (9), unit price per litre in
      minor units (9), amount in minor units (12): 33 digits; repeated per line
  PC  a product the pump may dispense (3 digits), at a pre-authorization; repeated
  OD  the odometer in kilometres (1 to 9 digits)
  DR  the driver's id, VH the vehicle's (1 to 20 printable characters)
"""
import dataclasses

from cardgate.gateway.iso8583.codec import FormatError
from cardgate.v1 import common_pb2

LINE_DIGITS = (3, 9, 9, 12)
TEXT_MAX = 20


@dataclasses.dataclass
class FuelData:
    lines: list = dataclasses.field(default_factory=list)         # common_pb2.ProductLine
    product_codes: list = dataclasses.field(default_factory=list)
    fleet: common_pb2.FleetData = dataclasses.field(default_factory=common_pb2.FleetData)


def parse(text: str, mti: str) -> FuelData:
    found, at = FuelData(), 0
    while at < len(text):
        tag, size = text[at:at + 2], text[at + 2:at + 4]
        if len(size) < 2 or not size.isdigit():
            raise _bad(f"subfield at {at} has no 2-digit length", mti)
        value = text[at + 4:at + 4 + int(size)]
        if len(value) != int(size):
            raise _bad(f"subfield {tag} is cut short", mti)
        at += 4 + int(size)
        _apply(found, tag, value, mti)
    return found


def _apply(found: FuelData, tag: str, value: str, mti: str):
    if tag == "PL":
        if len(value) != sum(LINE_DIGITS) or not value.isdigit():
            raise _bad(f"a product line (PL) is {sum(LINE_DIGITS)} digits", mti)
        parts, at = [], 0
        for size in LINE_DIGITS:
            parts.append(int(value[at:at + size]))
            at += size
        found.lines.append(common_pb2.ProductLine(product_code=parts[0], volume_ml=parts[1],
                                                  unit_price_minor=parts[2],
                                                  amount_minor=parts[3]))
    elif tag == "PC":
        if len(value) != 3 or not value.isdigit():
            raise _bad("a product code (PC) is 3 digits", mti)
        found.product_codes.append(int(value))
    elif tag == "OD":
        if not 1 <= len(value) <= 9 or not value.isdigit():
            raise _bad("the odometer (OD) is 1 to 9 digits", mti)
        found.fleet.odometer_km = int(value)
    elif tag in ("DR", "VH"):
        if not 1 <= len(value) <= TEXT_MAX or not value.isprintable():
            raise _bad(f"{tag} is 1 to {TEXT_MAX} printable characters", mti)
        setattr(found.fleet, "driver_id" if tag == "DR" else "vehicle_id", value)
    else:
        raise _bad(f"unknown subfield {tag!r} (PL, PC, OD, DR, VH)", mti)


def _bad(why: str, mti: str) -> FormatError:
    return FormatError(f"field 63: {why}", "63", mti)
