# Fleet configuration records: product sets, restriction profiles, usage, contracts, outlets, the catalog.


def product_set(bytes bitmap):
    """The product codes of a PRODUCT_SET_SIZE-byte bitmap, ascending."""
    return tuple(i for i in range(len(bitmap) * 8) if bitmap[i >> 3] >> (i & 7) & 1)


def pack_profile(unsigned int profile_id, *, products=None, nonfuel_allowed=True, prompts=0,
                 days_mask=0, minute_from=0, minute_to=0, utc_offset_min=0, places=(),
                 limits=None, soft=(), unsigned int zone_id=0, int pin_policy=0):
    """A ProfileRecord. products: allowed fuel codes (None: every fuel); limits:
    {(Period, Measure): max}; soft: the (Period, Measure) keys that only flag;
    pin_policy: a PinPolicy (0: the card's range's; REQUIRED: a PIN prompt)."""
    cdef ProfileRecord p
    memset(&p, 0, sizeof(p))
    p.profile_id = profile_id
    p.zone_id = zone_id
    if nonfuel_allowed:
        p.flags |= PROFILE_NONFUEL_ALLOWED
    if products is not None:
        p.flags |= PROFILE_FUELS_RESTRICTED
        for code in products:
            p.allowed_products[code >> 3] |= 1 << (code & 7)
    p.prompts = prompts
    if pin_policy == PIN_POLICY_REQUIRED:
        p.prompts |= PROMPT_PIN
    elif pin_policy == PIN_POLICY_OPTIONAL:
        p.flags |= PROFILE_PIN_OPTIONAL
    elif pin_policy == PIN_POLICY_NOT_USED:
        p.flags |= PROFILE_PIN_NOT_USED
    elif pin_policy:
        raise ValueError(f"pin_policy must be a PinPolicy, got {pin_policy}")
    p.days_mask = days_mask
    p.minute_from = minute_from
    p.minute_to = minute_to
    p.utc_offset_min = utc_offset_min
    if len(places) > PROFILE_PLACES_MAX:
        raise ValueError(f"at most {PROFILE_PLACES_MAX} outlets or regions")
    p.place_count = len(places)
    for i, code in enumerate(places):
        p.places[i] = code
    for key, value in (limits or {}).items():
        p.limits[limit_index(*key)] = value
    for key in soft:
        p.soft_mask |= 1 << limit_index(*key)
    return (<char*>&p)[:sizeof(p)]


Profile = namedtuple("Profile", "profile_id nonfuel_allowed products prompts days_mask "
                     "minute_from minute_to utc_offset_min places limits soft zone_id pin_policy",
                     defaults=(0, 0))


def unpack_profile(bytes data):
    _check_size(data, sizeof(ProfileRecord), "profile")
    cdef const ProfileRecord* p = <const ProfileRecord*><const char*>data
    limits = {(Period(i // LIMIT_MEASURES), Measure(i % LIMIT_MEASURES)): p.limits[i]
              for i in range(LIMIT_PERIODS * LIMIT_MEASURES) if p.limits[i]}
    soft = frozenset(key for key in limits if p.soft_mask >> limit_index(*key) & 1)
    return Profile(p.profile_id, bool(p.flags & PROFILE_NONFUEL_ALLOWED),
                   product_set((<char*>p.allowed_products)[:PRODUCT_SET_SIZE])
                   if p.flags & PROFILE_FUELS_RESTRICTED else None,
                   p.prompts, p.days_mask, p.minute_from, p.minute_to, p.utc_offset_min,
                   tuple(p.places[i] for i in range(min(p.place_count, PROFILE_PLACES_MAX))), limits, soft,
                   p.zone_id, PIN_POLICY_REQUIRED if p.prompts & PROMPT_PIN
                   else PIN_POLICY_NOT_USED if p.flags & PROFILE_PIN_NOT_USED
                   else PIN_POLICY_OPTIONAL if p.flags & PROFILE_PIN_OPTIONAL else 0)


Usage = namedtuple("Usage", "period_index used pending odometer")


def unpack_usage(bytes data):
    """period_index: (day, week, month, lifetime); used[period - 1][measure] for the
    counted periods (Period.DAY..LIFETIME); pending[measure]; odometer or None."""
    _check_size(data, sizeof(UsageRecord), "usage")
    cdef const UsageRecord* u = <const UsageRecord*><const char*>data
    return Usage(tuple(u.period_index[i] for i in range(COUNTED_PERIODS)),
                 tuple(tuple(u.used[p * LIMIT_MEASURES + m] for m in range(LIMIT_MEASURES))
                       for p in range(COUNTED_PERIODS)),
                 tuple(u.pending[m] for m in range(LIMIT_MEASURES)),
                 u.odometer if u.odometer_set else None)


Contract = namedtuple("Contract", "contract_id profile_id currency credit_limit_minor")


def unpack_contract(bytes data):
    _check_size(data, sizeof(ContractRecord), "contract")
    cdef const ContractRecord* c = <const ContractRecord*><const char*>data
    return Contract(c.contract_id, c.profile_id, _currency(c.currency), c.credit_limit_minor)


def pack_outlet(unsigned int outlet_code, unsigned int region_code, str name,
                unsigned int partner_id=0, str display_name=""):
    cdef OutletRecord o
    memset(&o, 0, sizeof(o))
    o.outlet_code = outlet_code
    o.region_code = region_code
    o.partner_id = partner_id
    cdef bytes shown = display_name.encode("utf-8")
    if len(shown) > OUTLET_DISPLAY_SIZE:
        raise ValueError(f"an outlet's display name is at most {OUTLET_DISPLAY_SIZE} bytes of UTF-8")
    memcpy(o.display_name, <char*>shown, len(shown))
    cdef bytes raw = name.encode("utf-8")
    if len(raw) > OUTLET_NAME_SIZE:
        raise ValueError(f"outlet name is at most {OUTLET_NAME_SIZE} bytes of UTF-8")
    memcpy(o.name, <char*>raw, len(raw))
    return (<char*>&o)[:sizeof(o)]


Outlet = namedtuple("Outlet", "outlet_code region_code name partner_id display_name")


def unpack_outlet(bytes data):
    _check_size(data, sizeof(OutletRecord), "outlet")
    cdef const OutletRecord* o = <const OutletRecord*><const char*>data
    return Outlet(o.outlet_code, o.region_code,
                  o.name[:strnlen_max(o.name, OUTLET_NAME_SIZE)].decode("utf-8", "replace"),
                  o.partner_id, o.display_name[:strnlen_max(o.display_name, OUTLET_DISPLAY_SIZE)]
                  .decode("utf-8", "replace"))


def unpack_catalog(bytes data):
    """(known codes, fuel codes)."""
    _check_size(data, sizeof(CatalogRecord), "catalog")
    return product_set(data[:PRODUCT_SET_SIZE]), product_set(data[PRODUCT_SET_SIZE:])


def config_key(kind: str, unsigned int id_):
    """Key of a fleet record in the config database: kind 'F', 'C' or 'O'."""
    return config_key_of(ord(kind), id_)


CATALOG_KEY = b"catalog"
