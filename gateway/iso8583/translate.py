"""ISO 8583 messages as the cardgate.v1 requests gRPC takes, and core replies as ISO 8583
answers: each message reaches the core through the same Operations.pack_operation (and
its checks) as the gRPC call that does the same thing.

Profile 1987 (docs/iso8583.md):
  0100 authorization           -> PreAuthorize (a pump's pre-authorization)
  0200 financial, code 00xxxx  -> Purchase
  0220 / 0221 advice with 90   -> CompletePreAuthorization of the 0100 that 90 names
  0400 / 0420 / 0421 reversal  -> Reverse of the message that 90 names
  0800 network management      -> answered here (sign-on 001, sign-off 002, echo 301)
"""
from cardgate.gateway.iso8583 import identity
from cardgate.gateway.iso8583.codec import FormatError
from cardgate.v1 import authorization_pb2, common_pb2

# ISO 4217 number -> code, for the currencies cardgate accepts (money.CURRENCY_EXPONENTS).
CURRENCIES = {
    "784": "AED", "032": "ARS", "036": "AUD", "975": "BGN", "048": "BHD", "986": "BRL",
    "124": "CAD", "756": "CHF", "152": "CLP", "156": "CNY", "170": "COP", "203": "CZK",
    "208": "DKK", "818": "EGP", "978": "EUR", "826": "GBP", "981": "GEL", "344": "HKD",
    "348": "HUF", "360": "IDR", "376": "ILS", "356": "INR", "352": "ISK", "400": "JOD",
    "392": "JPY", "404": "KES", "410": "KRW", "414": "KWD", "398": "KZT", "504": "MAD",
    "484": "MXN", "458": "MYR", "566": "NGN", "578": "NOK", "554": "NZD", "512": "OMR",
    "608": "PHP", "586": "PKR", "985": "PLN", "634": "QAR", "946": "RON", "941": "RSD",
    "682": "SAR", "752": "SEK", "702": "SGD", "764": "THB", "788": "TND", "949": "TRY",
    "901": "TWD", "980": "UAH", "840": "USD", "860": "UZS", "704": "VND", "710": "ZAR",
}
NUMBERS = {code: number for number, code in CURRENCIES.items()}
NETWORK_CODES = {"001": "sign-on", "002": "sign-off", "301": "echo"}
ECHOED = ("2", "3", "4", "7", "11", "12", "13", "37", "41", "42", "49")


def _required(fields: dict, *numbers: str):
    for number in numbers:
        if not fields.get(number):
            raise FormatError(f"field {number} is required in a {fields['t']}", number,
                              fields["t"])


def request_id_of(fields: dict, merchant_id: str) -> str:
    _required(fields, "7", "11", "41")
    return identity.request_id(merchant_id, fields["41"], fields["11"], fields["7"], fields["t"])


def original_id_of(fields: dict, merchant_id: str) -> str:
    """The request id of the message field 90 names: original type (4), STAN (6) and
    transmission date and time (10), then the acquirer's and forwarder's ids (ignored)."""
    _required(fields, "90")
    original = fields["90"]
    return identity.request_id(merchant_id, fields["41"], original[4:10], original[10:20],
                               original[:4])


def _money(fields: dict) -> common_pb2.Money:
    _required(fields, "4", "49")
    currency = CURRENCIES.get(fields["49"])
    if currency is None:
        raise FormatError(f"field 49: currency {fields['49']} is not one cardgate accepts",
                          "49", fields["t"])
    return common_pb2.Money(amount_minor=int(fields["4"]), currency=currency)


def operation(fields: dict, merchant_id: str, outlet_id: str):
    """(kind as ForecourtOperation names it, cardgate.v1 request) of one message, or
    (None, None) for network management; FormatError for a message that cannot be one."""
    mti = fields["t"]
    acceptor = common_pb2.Acceptor(merchant_id=merchant_id, outlet_id=outlet_id)
    if mti == "0800":
        _required(fields, "70")
        if fields["70"] not in NETWORK_CODES:
            raise FormatError(f"field 70: {fields['70']} is not a network management code "
                              f"this host answers ({', '.join(NETWORK_CODES)})", "70", mti)
        return None, None
    request_id = request_id_of(fields, merchant_id)
    if mti == "0200":
        _required(fields, "2", "3")
        if not fields["3"].startswith("00"):
            raise FormatError(f"field 3: processing code {fields['3']} is not a purchase (00)",
                              "3", mti)
        return "purchase", authorization_pb2.PurchaseRequest(
            request_id=request_id, pan=fields["2"], amount=_money(fields), acceptor=acceptor)
    if mti == "0100":
        _required(fields, "2")
        return "preauthorize", authorization_pb2.PreAuthorizeRequest(
            request_id=request_id, pan=fields["2"], amount=_money(fields), acceptor=acceptor)
    if mti in ("0220", "0221"):
        _required(fields, "2", "90")
        if not fields["90"].startswith("0100"):
            raise FormatError("field 90: an advice completes a 0100 pre-authorization",
                              "90", mti)
        return "complete", authorization_pb2.CompletePreAuthorizationRequest(
            request_id=request_id, pan=fields["2"], hold_id=original_id_of(fields, merchant_id),
            amount=_money(fields), acceptor=acceptor)
    if mti in ("0400", "0420", "0421"):
        return "reverse", authorization_pb2.ReverseRequest(
            request_id=request_id, original_request_id=original_id_of(fields, merchant_id),
            acceptor=acceptor)
    raise FormatError(f"message type {mti} is not one this host takes", "t", mti)


def answer_type(mti: str) -> str:
    """The answer's type: the function made odd (0200 -> 0210), repeats answered as their
    originals (0221 -> 0230)."""
    return mti[:2] + str(int(mti[2]) | 1) + "0"


def answer(fields: dict, code: str, reply=None, profile: str = "1987") -> dict:
    """The answer to `fields` with response code `code`: the identifying fields echoed,
    the approval code and the card's balance when the core answered (reply)."""
    out = {"t": answer_type(fields["t"]), "39": code}
    out.update({n: fields[n] for n in ECHOED if n in fields})
    if "70" in fields:
        out["70"] = fields["70"]
    if reply is not None:
        if reply.approval_code:
            out["38"] = f"{reply.approval_code:06d}"
        if reply.card_id and reply.currency in NUMBERS:
            out["54"] = balances(reply, reply.currency)
    return out


def balances(reply, currency: str) -> str:
    """Field 54 (ISO 8583:1987): per amount, account type (2), amount type (2: 01 ledger,
    02 available), currency (3), sign (C or D) and 12 digits of minor units."""
    def amount(kind: str, minor: int) -> str:
        return f"00{kind}{NUMBERS[currency]}{'C' if minor >= 0 else 'D'}{abs(minor):012d}"
    return amount("01", reply.balance_minor) + \
        amount("02", reply.balance_minor - reply.pending_minor)

