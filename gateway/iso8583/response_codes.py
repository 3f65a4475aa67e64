"""Field 39 for every cardgate result: the ISO 8583:1987 response code (2 characters) and
the ISO 8583:1993 action code (3 digits). docs/iso8583.md lists the same table (a test
keeps the two alike). Results only operators' requests can have (issuing, configuration)
answer 12 / 902, invalid transaction, should they ever come through a terminal."""
from cardgate.fastcore.records import Result

APPROVED = ("00", "000")
INVALID_TRANSACTION = ("12", "902")
FORMAT_ERROR = ("30", "904")
NOT_PERMITTED_TO_TERMINAL = ("58", "120")
DUPLICATE = ("94", "913")                # a request id reused for other content
SYSTEM_MALFUNCTION = ("96", "909")       # the host could not answer: retry the same message
PIN_UNREADABLE = ("55", "117")           # a PIN block that does not decipher to a PIN

# (1987 code, 1993 action code): the results answered with it.
_CODES = {
    APPROVED: (Result.APPROVED,),
    ("10", "002"): (Result.PARTIALLY_APPROVED,),
    ("14", "111"): (Result.DECLINED_UNKNOWN_CARD, Result.DECLINED_UNKNOWN_CARD_RANGE),
    ("62", "104"): (
        Result.DECLINED_CARD_NOT_ACTIVE, Result.DECLINED_CARD_BLOCKED,
        Result.DECLINED_CARD_CLOSED),
    ("54", "101"): (Result.DECLINED_CARD_EXPIRED,),
    ("55", "117"): (Result.DECLINED_WRONG_PIN, Result.DECLINED_PIN_REQUIRED),
    ("51", "116"): (
        Result.DECLINED_INSUFFICIENT_FUNDS, Result.DECLINED_NO_UNITS_LEFT,
        Result.DECLINED_CREDIT_LIMIT_EXCEEDED, Result.DECLINED_INSUFFICIENT_POINTS,
        Result.DECLINED_POINTS_PENDING, Result.DECLINED_POINTS_OWED),
    INVALID_TRANSACTION: (
        Result.DECLINED_CURRENCY_MISMATCH, Result.DECLINED_BALANCE_NOT_ZERO,
        Result.DECLINED_ORIGINAL_NOT_REFUNDABLE, Result.DECLINED_CARD_MISMATCH,
        Result.DECLINED_NOT_REVERSIBLE, Result.DECLINED_ALREADY_REVERSED,
        Result.DECLINED_CARD_ALREADY_ISSUED, Result.DECLINED_CARD_RANGE_EXISTS,
        Result.DECLINED_INVALID_STATUS_CHANGE, Result.DECLINED_RANGE_EXHAUSTED,
        Result.DECLINED_REPLACEMENT_UNUSABLE, Result.DECLINED_HOLDS_OPEN,
        Result.DECLINED_HOLD_ALREADY_COMPLETED, Result.DECLINED_HOLD_VOIDED,
        Result.DECLINED_HOLD_EXPIRED, Result.DECLINED_UNKNOWN_PROFILE,
        Result.DECLINED_UNKNOWN_CONTRACT, Result.DECLINED_CONTRACT_CARD,
        Result.DECLINED_OUTLET_CODE_TAKEN, Result.DECLINED_RANGE_IN_ANOTHER_PROGRAM,
        Result.DECLINED_RECEIVING_CARD_UNUSABLE, Result.DECLINED_UNKNOWN_PROGRAM,
        Result.DECLINED_POINTS_HAVE_NO_VALUE, Result.DECLINED_UNKNOWN_ZONE,
        Result.DECLINED_OFFLINE_TOO_OLD),
    ("61", "121"): (
        Result.DECLINED_BALANCE_LIMIT_EXCEEDED, Result.DECLINED_LOAD_LIMIT_EXCEEDED,
        Result.DECLINED_POINTS_LIMIT_EXCEEDED, Result.DECLINED_UNITS_LIMIT_EXCEEDED,
        Result.DECLINED_SYSTEM_LIMIT_EXCEEDED, Result.DECLINED_LIMIT_EXCEEDED,
        Result.DECLINED_OFFLINE_FLOOR_EXCEEDED),
    ("25", "914"): (Result.DECLINED_ORIGINAL_NOT_FOUND, Result.DECLINED_HOLD_NOT_FOUND),
    ("13", "110"): (
        Result.DECLINED_REFUND_EXCEEDS_ORIGINAL, Result.DECLINED_COMPLETION_EXCEEDS_HOLD),
    NOT_PERMITTED_TO_TERMINAL: (Result.DECLINED_NOT_OWN_REQUEST, Result.DECLINED_OUTLET_NOT_ALLOWED),
    ("57", "119"): (
        Result.DECLINED_PRODUCT_NOT_ALLOWED, Result.DECLINED_TIME_NOT_ALLOWED,
        Result.DECLINED_NOT_IN_PROGRAM),
    FORMAT_ERROR: (
        Result.DECLINED_PROMPT_REQUIRED, Result.DECLINED_ODOMETER_BACKWARDS,
        Result.REJECTED_INVALID_REQUEST, Result.REJECTED_UNKNOWN_PRODUCT),
    ("03", "109"): (Result.DECLINED_UNKNOWN_OUTLET, Result.DECLINED_UNKNOWN_PARTNER),
    DUPLICATE: (Result.REJECTED_REQUEST_ID_REUSED,),
}
_BY_RESULT = {result: pair for pair, results in _CODES.items() for result in results}


def code(pair: tuple, profile: str = "1987") -> str:
    """The profile's half of a (1987, 1993) pair."""
    return pair[0] if profile == "1987" else pair[1]


def response_code(result: int, profile: str = "1987") -> str:
    """Field 39 of the answer to a request the core answered `result`."""
    return code(_BY_RESULT[Result(result)], profile)


def table():
    """[(result name, 1987 code, 1993 code)] in the results' order, for the docs."""
    return [(result.name, *_BY_RESULT[result]) for result in Result]
