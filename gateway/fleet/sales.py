"""Fleet fuel cards at the gateway: what a sale says (product lines, volume, prompts,
outlet) in the core's terms, and the operator's fleet configuration.

The rules themselves (profiles, limits, contracts) are decided by the core; this
module only validates and packs.
"""
import functools
import hashlib

from cardgate.fastcore import records
from cardgate.fastcore.records import Measure, Op, Period
from cardgate.gateway import limits, validation, zones
from cardgate.gateway.validation import InvalidArgument

PRODUCT_CODE_MAX = 255
FLEET_TEXT_MAX = 32          # driver and vehicle ids, in characters
PLACE_KINDS = ("outlet", "region")
# cardgate.v1 enums are the core's numbers + 1 (their 0 is UNSPECIFIED).
PROMPT_BITS = {1: records.Prompt.PIN, 2: records.Prompt.ODOMETER, 3: records.Prompt.DRIVER,
               4: records.Prompt.VEHICLE}


@functools.lru_cache(maxsize=limits.OUTLET_CODES_CACHED_MAX)
def _code(kind: str, *parts: str) -> int:
    # Every sale names its outlet: a terminal's is hashed once, not per request.
    digest = hashlib.sha256("\0".join((kind,) + parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little") or 1


def outlet_code(merchant_id: str, outlet_id: str) -> int:
    """The core's 32-bit name of an outlet (0 when the request names none)."""
    return _code("outlet", merchant_id, outlet_id) if merchant_id or outlet_id else 0


def merchant_code(merchant_id: str) -> int:
    """The core's 32-bit name of a merchant (0: the request is made for none)."""
    return _code("merchant", merchant_id) if merchant_id else 0


def acceptor_codes(acceptor) -> dict:
    """The core's names of where a request is made (pack_request's outlet_code and
    merchant_code) from its cardgate.v1.Acceptor, which access control has bound to the
    calling terminal."""
    return dict(outlet_code=outlet_code(acceptor.merchant_id, acceptor.outlet_id),
                merchant_code=merchant_code(acceptor.merchant_id))


def pin_policy(value: int) -> int:
    """A cardgate.v1.PinPolicy, checked (0: unspecified)."""
    if value not in (0, *records.PinPolicy):
        raise InvalidArgument("pin_policy", "must be PIN_POLICY_REQUIRED, _OPTIONAL or _NOT_USED "
                              "(or unspecified)")
    return value


def region_code(region: str) -> int:
    return _code("region", region) if region else 0


_PROMPT_BITS_INT = tuple((value, int(bit)) for value, bit in PROMPT_BITS.items())


def prompts_of(bits: int) -> list:
    """cardgate.v1.Prompt values of the core's prompt bits."""
    if not bits:
        return []
    return [value for value, bit in _PROMPT_BITS_INT if bits & bit]


def limit_of(limit_hit: int):
    """(cardgate.v1 LimitPeriod, LimitMeasure) of the core's limit_hit, or None."""
    if not limit_hit:
        return None
    period, measure = divmod(limit_hit - 1, len(Measure))
    return period + 1, measure + 1


def product_code(value: int, field: str) -> int:
    if not 0 <= value <= PRODUCT_CODE_MAX:
        raise InvalidArgument(field, f"must be a product code 0 to {PRODUCT_CODE_MAX}, got {value}")
    return value


def non_negative(value: int, field: str, maximum: int) -> int:
    if not 0 <= value <= maximum:
        raise InvalidArgument(field, f"must be 0 to {maximum}, got {value}")
    return value


def priced(volume_ml: int, unit_price_minor: int) -> int:
    """volume_ml at unit_price_minor a litre, rounded half up."""
    return (volume_ml * unit_price_minor + 500) // 1000


def lines_total(lines, amount_minor: int, field: str = "lines"):
    """(amount, volume, product codes) of a sale's lines; amount_minor, when not 0,
    must equal their sum. No lines: (amount_minor, 0, ())."""
    if not lines:
        return amount_minor, 0, ()
    total = volume = 0
    codes = []
    for i, line in enumerate(lines):
        where = f"{field}[{i}]"
        codes.append(product_code(line.product_code, f"{where}.product_code"))
        line_volume = non_negative(line.volume_ml, f"{where}.volume_ml", records.VOLUME_ML_MAX)
        price = non_negative(line.unit_price_minor, f"{where}.unit_price_minor", records.AMOUNT_MINOR_MAX)
        line_amount = non_negative(line.amount_minor, f"{where}.amount_minor", records.AMOUNT_MINOR_MAX)
        if not line_amount:
            if not line_volume:
                raise InvalidArgument(where, "has neither amount_minor nor volume_ml")
            if not price:
                raise InvalidArgument(f"{where}.unit_price_minor", "is needed to price volume_ml "
                                      "(the line has no amount_minor)")
            line_amount = priced(line_volume, price)
        total += line_amount
        volume += line_volume
    if amount_minor and amount_minor != total:
        raise InvalidArgument("amount.amount_minor", f"{amount_minor} differs from the sum of "
                              f"the lines, {total}")
    return total, non_negative(volume, f"{field} volume", records.VOLUME_ML_MAX), tuple(codes)


def _prompts_given(fleet) -> dict:
    fields = {}
    if fleet.HasField("odometer_km"):
        fields["odometer"] = non_negative(fleet.odometer_km, "fleet.odometer_km", records.ODOMETER_MAX)
    for name, key in (("driver_id", "driver_present"), ("vehicle_id", "vehicle_present")):
        text = getattr(fleet, name)
        if len(text) > FLEET_TEXT_MAX or not text.isprintable():
            raise InvalidArgument(f"fleet.{name}", f"must be at most {FLEET_TEXT_MAX} printable characters")
        fields[key] = bool(text)
    return fields


def sale_fields(kind: str, m):
    """(amount, pack_request keywords) of a purchase, pre-authorization or completion
    (where it is made: acceptor_codes, added by the caller as for every operation)."""
    if kind == "preauthorize":
        amount = m.amount.amount_minor
        volume = non_negative(m.volume_ml, "volume_ml", records.VOLUME_ML_MAX)
        price = non_negative(m.unit_price_minor, "unit_price_minor", records.AMOUNT_MINOR_MAX)
        if amount == 0 and volume:
            if not price:
                raise InvalidArgument("unit_price_minor", "is needed to turn volume_ml into an "
                                      "amount (amount.amount_minor is 0)")
            amount = priced(volume, price)
            if not amount:
                raise InvalidArgument("volume_ml", f"{volume} ml at {price} a litre prices to "
                                      "0 minor units: nothing to hold")
        codes = tuple(product_code(c, f"product_codes[{i}]") for i, c in enumerate(m.product_codes))
    else:
        amount, volume, codes = lines_total(m.lines, m.amount.amount_minor)
        if kind == "purchase" and m.lines and not amount:
            raise InvalidArgument("lines", "price to 0 minor units: nothing to charge")
    fields = dict(volume_ml=volume, products=codes)
    if kind != "complete":
        fields.update(_prompts_given(m.fleet))
    return amount, fields


# ---- the operator's configuration --------------------------------------------------

def _place_code(place, field: str) -> int:
    kind = place.WhichOneof("place")
    if kind == "outlet" and (place.outlet.merchant_id or place.outlet.outlet_id):
        return outlet_code(place.outlet.merchant_id, place.outlet.outlet_id)
    if kind == "region" and place.region:
        return region_code(place.region)
    raise InvalidArgument(field, "must name an outlet (merchant_id, outlet_id) or a region")


def schedule_of(m, days_field: str, prefix: str = "") -> int:
    """The days bitmap (bit 0 Monday) of a message's days (1 Monday .. 7 Sunday), after
    checking its minute_from / minute_to."""
    days_mask = 0
    for i, day in enumerate(getattr(m, days_field)):
        if not 1 <= day <= 7:
            raise InvalidArgument(f"{prefix}{days_field}[{i}]", f"must be 1 (Monday) to 7 (Sunday), got {day}")
        days_mask |= 1 << (day - 1)
    for field in ("minute_from", "minute_to"):
        non_negative(getattr(m, field), prefix + field, 1440)
    return days_mask


def pack_profile(m) -> bytes:
    """The core's ProfileRecord of a SetRestrictionProfileRequest."""
    profile_id = validation.config_id(m.profile_id, "profile_id")
    prompts = 0
    for i, prompt in enumerate(m.required_prompts):
        if prompt not in PROMPT_BITS:
            raise InvalidArgument(f"required_prompts[{i}]", "must be PROMPT_PIN, _ODOMETER, "
                                  "_DRIVER_ID or _VEHICLE_ID")
        prompts |= PROMPT_BITS[prompt]
    days_mask = schedule_of(m, "allowed_days")
    validation.utc_offset_min(m.utc_offset_min)
    if len(m.allowed_places) > records.PROFILE_PLACES:
        raise InvalidArgument("allowed_places", f"at most {records.PROFILE_PLACES}")
    places = [_place_code(p, f"allowed_places[{i}]") for i, p in enumerate(m.allowed_places)]
    limits, soft = {}, []
    for i, limit in enumerate(m.limits):
        where = f"limits[{i}]"
        if not 1 <= limit.period <= len(Period) or not 1 <= limit.measure <= len(Measure):
            raise InvalidArgument(where, "must name a period and a measure")
        key = (Period(limit.period - 1), Measure(limit.measure - 1))
        if key in limits:
            raise InvalidArgument(where, "repeats a period and measure already limited")
        if not 1 <= limit.max <= records.BALANCE_MINOR_MAX:
            raise InvalidArgument(f"{where}.max", f"must be 1 to {records.BALANCE_MINOR_MAX}, got {limit.max}")
        limits[key] = limit.max
        if limit.soft:
            soft.append(key)
    codes = [product_code(c, f"allowed_fuel_codes[{i}]") for i, c in enumerate(m.allowed_fuel_codes)]
    return records.pack_profile(
        profile_id, products=codes if (codes or m.restrict_fuels) else None,
        nonfuel_allowed=m.non_fuel_allowed, prompts=prompts, days_mask=days_mask,
        minute_from=m.minute_from, minute_to=m.minute_to, utc_offset_min=m.utc_offset_min,
        places=places, limits=limits, soft=soft,
        zone_id=zones.zone_fields(m.time_zone, m.utc_offset_min)[0],
        pin_policy=pin_policy(m.pin_policy))


class FleetOperations:
    """The operator's fleet configuration and reads; submits through Operations."""

    def __init__(self, operations):
        self.ops = operations

    def _submit(self, op, request_id_text, **fields):
        rid = validation.request_id(request_id_text)
        return self.ops.submit_one(self.ops.pack(op, rid, **fields), request_id_text)

    def define_product(self, m):
        if m.kind not in (records.PRODUCT_KIND_FUEL, records.PRODUCT_KIND_OTHER):
            raise InvalidArgument("kind", "must be PRODUCT_KIND_FUEL or PRODUCT_KIND_OTHER")
        if len(m.name.encode("utf-8")) > 32:
            raise InvalidArgument("name", "is longer than 32 bytes")
        return self._submit(Op.DEFINE_PRODUCT, m.request_id,
                            product_code=product_code(m.product_code, "product_code"),
                            product_kind=m.kind, product_name=m.name)

    def define_outlet(self, m):
        if not (m.merchant_id and m.outlet_id):
            raise InvalidArgument("outlet_id", "merchant_id and outlet_id are both needed")
        name = f"{m.merchant_id}/{m.outlet_id}"
        if len(name.encode("utf-8")) > 64:
            raise InvalidArgument("outlet_id", "merchant_id/outlet_id is longer than 64 bytes")
        if len(m.display_name.encode("utf-8")) > records.OUTLET_DISPLAY_BYTES or \
                not m.display_name.isprintable():
            raise InvalidArgument("display_name", f"must be at most {records.OUTLET_DISPLAY_BYTES} "
                                  "bytes of printable UTF-8")
        code = outlet_code(m.merchant_id, m.outlet_id)
        return self._submit(Op.DEFINE_OUTLET, m.request_id, outlet_code=code,
                            payload=records.pack_outlet(code, region_code(m.region), name,
                                                        m.partner_id, m.display_name))

    def set_profile(self, m):
        payload = pack_profile(m)
        rid = validation.request_id(m.request_id)
        return self.ops.submit_configuration(
            zones.zone_fields(m.time_zone, m.utc_offset_min)[1],
            self.ops.pack(Op.SET_PROFILE, rid, profile_id=m.profile_id, payload=payload),
            m.request_id)

    def set_contract(self, m):
        limit = non_negative(m.credit_limit_minor, "credit_limit_minor", records.BALANCE_MINOR_MAX)
        return self._submit(Op.SET_CONTRACT, m.request_id,
                            contract_id=validation.config_id(m.contract_id, "contract_id"),
                            currency=validation.currency(m.currency), credit_limit_minor=limit,
                            profile_id=m.profile_id)

    def assign_card(self, m):
        return self._submit(Op.ASSIGN_CARD, m.request_id, card_key=self.ops.card_key(m.pan),
                            profile_id=m.profile_id, contract_id=m.contract_id)
