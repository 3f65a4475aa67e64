"""ISO 8583 messages as the cardgate.v1 requests gRPC takes, and core replies as ISO 8583
answers: each message reaches the core through the same Operations.pack_operation (and
its checks) as the gRPC call that does the same thing. By type (docs/iso8583.md), 1987 /
1993 profile:

  0100 / 1100 authorization         -> PreAuthorize (a pump's pre-authorization)
  0200 / 1200 financial, code 00    -> Purchase
  0200 / 1200 financial, code 20    -> Refund of the purchase the original data elements name
  0220, 0221 / 1220, 1221 advice    -> CompletePreAuthorization of the authorization that
                                       the original data elements (90 / 56) name; without
                                       them, a Purchase the terminal approved offline (its
                                       approval code in 38, its local time in 12 / 13)
  0400, 0420, 0421 / 1420, 1421     -> Reverse of the message the original data elements name
  0800 / 1804 network management    -> answered here: sign-on, sign-off, echo
"""
import calendar
import dataclasses
import time

from cardgate.gateway.iso8583 import fuel, identity, spec
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
# Echoed in an answer: what identifies the message, the network management code, and an
# advice's approval code (the one the terminal gave). Never the card number (field 2): a
# full PAN is never returned; the terminal matches answers by STAN and terminal id.
ECHOED = ("3", "4", "7", "11", "12", "13", "24", "37", "38", "41", "42", "49", "70")


@dataclasses.dataclass(frozen=True)
class Profile:
    version: str            # the message types' first digit
    when: str               # the field that, with the STAN, tells a terminal's messages apart
    when_digits: int        # its length (the spec's)
    original: str           # the original data elements' field
    network: str            # the network management code's field
    network_codes: tuple    # the codes answered: sign-on, sign-off, echo
    network_type: str       # the network management request's type, less its version


PROFILES = {"1987": Profile("0", "7", spec.FIELDS_1987["7"][1], "90", "70",
                            ("001", "002", "301"), "800"),
            "1993": Profile("1", "12", spec.FIELDS_1993["12"][1], "56", "24",
                            ("801", "802", "831"), "804")}


def _required(fields: dict, *numbers: str):
    for number in numbers:
        if not fields.get(number):
            raise FormatError(f"field {number} is required in a {fields['t']}", number,
                              fields["t"])


def request_id_of(fields: dict, merchant_id: str, profile: Profile) -> str:
    _required(fields, profile.when, "11", "41")
    return identity.request_id(merchant_id, fields["41"], fields["11"], fields[profile.when],
                               fields["t"])


def original_id_of(fields: dict, merchant_id: str, profile: Profile) -> str:
    """The request id of the message the original data elements name: its type (4), STAN
    (6) and the time its request id was derived from (the profile's `when` field), then
    the acquirer's and forwarder's ids (ignored)."""
    _required(fields, profile.original)
    original = fields[profile.original]
    end = 10 + profile.when_digits
    if len(original) < end:
        raise FormatError(f"field {profile.original}: the original's type, STAN and time "
                          f"take {end} digits", profile.original, fields["t"])
    return identity.request_id(merchant_id, fields["41"], original[4:10], original[10:end],
                               original[:4])


def _money(fields: dict) -> common_pb2.Money:
    _required(fields, "4", "49")
    currency = CURRENCIES.get(fields["49"])
    if currency is None:
        raise FormatError(f"field 49: currency {fields['49']} is not one cardgate accepts",
                          "49", fields["t"])
    return common_pb2.Money(amount_minor=int(fields["4"]), currency=currency)


def operation(fields: dict, merchant_id: str, outlet_id: str, profile_name: str = "1987"):
    """(kind as ForecourtOperation names it, cardgate.v1 request) of one message, or
    (None, None) for network management; FormatError for a message that cannot be one."""
    profile = PROFILES[profile_name]
    mti = fields["t"]
    if mti[0] != profile.version:
        raise FormatError(f"message type {mti} is not of profile {profile_name}", "t", mti)
    kind = mti[1:]
    acceptor = common_pb2.Acceptor(merchant_id=merchant_id, outlet_id=outlet_id)
    if kind == profile.network_type:
        _required(fields, profile.network)
        if fields[profile.network] not in profile.network_codes:
            raise FormatError(f"field {profile.network}: {fields[profile.network]} is not a "
                              "network management code this host answers "
                              f"({', '.join(profile.network_codes)})", profile.network, mti)
        return None, None
    if kind not in ("100", "200", "220", "221", "400", "420", "421") or \
            (kind == "400" and profile.version == "1"):
        raise FormatError(f"message type {mti} is not one this host takes", "t", mti)
    request_id = request_id_of(fields, merchant_id, profile)
    pump = fuel.parse(fields.get("63", ""), mti)
    if kind == "200":
        _required(fields, "2", "3")
        if fields["3"].startswith("20"):            # a return: refund of the original named
            return "refund", authorization_pb2.RefundRequest(
                request_id=request_id, pan=fields["2"], amount=_money(fields),
                original_request_id=original_id_of(fields, merchant_id, profile),
                acceptor=acceptor)
        if not fields["3"].startswith("00"):
            raise FormatError(f"field 3: processing code {fields['3']} is neither a purchase "
                              "(00) nor a return (20)", "3", mti)
        return "purchase", authorization_pb2.PurchaseRequest(
            request_id=request_id, pan=fields["2"], amount=_money(fields), acceptor=acceptor,
            lines=pump.lines, fleet=pump.fleet)
    if kind == "100":
        _required(fields, "2")
        return "preauthorize", authorization_pb2.PreAuthorizeRequest(
            request_id=request_id, pan=fields["2"], amount=_money(fields), acceptor=acceptor,
            product_codes=pump.product_codes, fleet=pump.fleet)
    if kind in ("220", "221") and not fields.get(profile.original):
        _required(fields, "2", "38")                # an offline sale, advised now
        return "purchase", authorization_pb2.PurchaseRequest(
            request_id=request_id, pan=fields["2"], amount=_money(fields), acceptor=acceptor,
            lines=pump.lines, fleet=pump.fleet, offline=authorization_pb2.OfflineApproval(
                approval_code=fields["38"].strip(), approved_local=local_time(fields, profile)))
    original = original_id_of(fields, merchant_id, profile)
    if kind in ("220", "221"):
        _required(fields, "2")
        if fields[profile.original][:4] != profile.version + "100":
            raise FormatError(f"field {profile.original}: an advice completes a "
                              f"{profile.version}100 authorization", profile.original, mti)
        return "complete", authorization_pb2.CompletePreAuthorizationRequest(
            request_id=request_id, pan=fields["2"], hold_id=original, amount=_money(fields),
            acceptor=acceptor, lines=pump.lines)
    return "reverse", authorization_pb2.ReverseRequest(
        request_id=request_id, original_request_id=original, acceptor=acceptor)


def local_time(fields: dict, profile: Profile, now_s: float = None) -> str:
    """The message's local date and time as "YYYY-MM-DDThh:mm:ss": 1993's field 12
    (YYMMDDhhmmss), or 1987's fields 13 (MMDD) and 12 (hhmmss), whose year is the latest
    that puts it no later than a day past the host's date."""
    mti = fields["t"]
    if profile.version == "1":
        _required(fields, "12")
        stamp = fields["12"]
        year, rest = 2000 + int(stamp[:2]), stamp[2:]
    else:
        _required(fields, "12", "13")
        rest = fields["13"] + fields["12"]
        latest = (now_s if now_s is not None else time.time()) + 86400
        year = time.gmtime(latest).tm_year
        while year > 1999 and not _valid_before(year, rest, latest):
            year -= 1
    text = f"{year:04d}-{rest[:2]}-{rest[2:4]}T{rest[4:6]}:{rest[6:8]}:{rest[8:10]}"
    if not _valid_before(year, rest, float("inf")):
        raise FormatError(f"field 12: local date and time {text} is not a date", "12", mti)
    return text


def _valid_before(year: int, mmddhhmmss: str, latest: float) -> bool:
    """Whether MMDDhhmmss of `year` is a date and time, no later than `latest`."""
    try:
        moment = time.strptime(f"{year:04d}{mmddhhmmss}", "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return calendar.timegm(moment) <= latest


def answer_type(mti: str) -> str:
    """The answer's type: the function made odd (0200 -> 0210, 1804 -> 1814), repeats
    answered as their originals (0221 -> 0230)."""
    return mti[:2] + str(int(mti[2]) | 1) + ("0" if mti[3] == "1" else mti[3])


def answer(fields: dict, code: str, reply=None, profile: str = "1987") -> dict:
    """The answer to `fields` with response code `code`: the identifying fields echoed,
    the approval code and the card's balance when the core answered (reply)."""
    out = {"t": answer_type(fields["t"]), "39": code}
    out.update({n: fields[n] for n in ECHOED if n in fields})
    if reply is not None:
        if reply.approval_code and "38" not in out:
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

