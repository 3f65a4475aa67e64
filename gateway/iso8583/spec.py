"""The field specifications of cardgate's ISO 8583 profiles, as pyiso8583 spec dictionaries.

docs/iso8583.md is the reference a terminal vendor builds from; this module is the same
table for the codec. Only the fields a profile uses are declared: a message whose bitmap
announces any other field is refused as a format error, not silently skipped.

Profile "1987": ISO 8583:1987, ASCII throughout, the primary and secondary bitmaps as 16
hexadecimal characters each, numeric fields as ASCII digits, variable fields with ASCII
length prefixes (LL or LLL). Field 52 (PIN block) is hexadecimal with an LL prefix: 16
characters (ISO 9564 format 0, TDES) or 32 (format 4, AES).

Profile "1993": ISO 8583:1993 in the style of IFSF host-to-host, in the same ASCII
encoding: 1xxx message types, field 12 the local date and time (YYMMDDhhmmss), field 24
the function code, field 39 a 3-digit action code, field 56 the original data elements.
"""
from iso8583.specs import default_ascii


def _field(kind: str, length: int, variable: int, desc: str) -> dict:
    """kind: 'n' digits, 'an' text, 'ans' text with symbols, 'b' hex text; variable: the
    length prefix's digits (0: fixed length)."""
    return {"data_enc": "ascii", "len_enc": "ascii", "len_type": variable, "max_len": length,
            "desc": desc, "kind": kind}


# Field number -> (kind, length, prefix digits, meaning), the 1987 profile.
FIELDS_1987 = {
    "2": ("n", 19, 2, "Primary account number (PAN)"),
    "3": ("n", 6, 0, "Processing code"),
    "4": ("n", 12, 0, "Amount, transaction (minor units)"),
    "7": ("n", 10, 0, "Transmission date and time, MMDDhhmmss UTC"),
    "11": ("n", 6, 0, "System trace audit number (STAN)"),
    "12": ("n", 6, 0, "Time, local transaction hhmmss"),
    "13": ("n", 4, 0, "Date, local transaction MMDD"),
    "14": ("n", 4, 0, "Date, expiration YYMM"),
    "22": ("n", 3, 0, "Point of service entry mode"),
    "35": ("ans", 37, 2, "Track 2 data"),
    "37": ("an", 12, 0, "Retrieval reference number"),
    "38": ("an", 6, 0, "Approval code"),
    "39": ("an", 2, 0, "Response code"),
    "41": ("ans", 8, 0, "Card acceptor terminal id"),
    "42": ("ans", 15, 0, "Card acceptor id (merchant)"),
    "49": ("n", 3, 0, "Currency code, transaction (ISO 4217 numeric)"),
    "52": ("b", 32, 2, "PIN block (ISO 9564 format 0: 16, format 4: 32), hexadecimal"),
    "54": ("an", 120, 3, "Additional amounts (balances)"),
    "63": ("ans", 999, 3, "Private: fuel and fleet data (docs/iso8583.md)"),
    "70": ("n", 3, 0, "Network management information code"),
    "90": ("n", 42, 0, "Original data elements"),
}


# The 1993 profile: the same fields where they mean the same, these where they differ.
FIELDS_1993 = {
    **{n: f for n, f in FIELDS_1987.items() if n not in ("12", "13", "39", "70", "90")},
    "12": ("n", 12, 0, "Date and time, local transaction YYMMDDhhmmss"),
    "24": ("n", 3, 0, "Function code"),
    "39": ("n", 3, 0, "Action code"),
    "56": ("n", 35, 2, "Original data elements: type, STAN, local date and time, acquirer"),
}
FIELDS_1993 = dict(sorted(FIELDS_1993.items(), key=lambda item: int(item[0])))


def _spec(fields: dict) -> dict:
    spec = {key: dict(default_ascii[key]) for key in ("h", "t", "p", "1")}
    for number, (kind, length, variable, desc) in fields.items():
        spec[number] = _field(kind, length, variable, desc)
    return spec


PROFILES = {"1987": _spec(FIELDS_1987), "1993": _spec(FIELDS_1993)}
