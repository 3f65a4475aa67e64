# Requests and replies: pack_request for the gateway, their decoders for everyone else.


Reply = namedtuple("Reply", "result op card_status currency approved_minor balance_minor "
                   "pending_minor card_id journal_seq approval_code pan_first6 pan_last4 "
                   "pan_length expiry_yyyymm prompts_missing limit_hit volume_ml "
                   "credit_limit_minor review tier earn_flags discount_bp points_earned "
                   "discount_minor lifetime_spend_minor points_seq points_redeemed "
                   "points_value_minor points_balance")
_RequestFields = namedtuple(
    "_RequestFields", "op target_status currency amount_minor request_id ref_request_id card_key "
    "range_id expiry_yyyymm pan_first6 pan_last4 pan_length pin_verifier partial_ok pin_tries_max "
    "reason adjust_down load_per_day_max_minor valid_until_s payload_size profile_id volume_ml "
    "odometer outlet_code contract_id products driver_present vehicle_present actor range_name "
    "iin_digits utc_offset_min merchant_code")


class RequestView(_RequestFields):
    """A CoreRequest as Python sees it. Where operations use the same bytes for different
    things (core_request.h), each use has its own name here too: read the one the
    operation means (a product's code, not its "range id")."""
    __slots__ = ()
    numbering = property(lambda self: self.target_status, doc="CREATE_RANGE")
    close_disposition = property(lambda self: self.target_status, doc="DEACTIVATE")
    product_kind = property(lambda self: self.target_status, doc="DEFINE_PRODUCT")
    stage = property(lambda self: self.target_status, doc="SET_STAGE")
    payment_method = property(lambda self: self.target_status, doc="LOYALTY_SALE")
    balance_max_minor = property(lambda self: self.amount_minor, doc="CREATE_RANGE")
    serial_count = property(lambda self: self.amount_minor, doc="ALLOCATE_SERIALS")
    credit_limit_minor = property(lambda self: self.amount_minor, doc="SET_CONTRACT")
    pin_policy = property(lambda self: self.reason, doc="CREATE_RANGE")
    card_payload_digest = property(lambda self: self.ref_request_id,
                                   doc="TRANSFER_POINTS, REPLACE_CARD, DEACTIVATE")
    payload_digest = property(lambda self: self.card_key, doc="configuration payloads")
    product_code = property(lambda self: self.range_id, doc="DEFINE_PRODUCT")
    product_name = property(lambda self: self.range_name, doc="DEFINE_PRODUCT")
    partner_name = property(lambda self: self.range_name, doc="DEFINE_PARTNER")
    program_id = property(lambda self: self.profile_id, doc="SET_RULES")
    partner_id = property(lambda self: self.profile_id, doc="DEFINE_PARTNER")
    birthday_mmdd = property(lambda self: self.profile_id, doc="SET_MEMBER")
    zone_id = property(lambda self: self.profile_id, doc="CREATE_RANGE, DEFINE_ZONE")
    points_tendered = property(lambda self: self.load_per_day_max_minor, doc="LOYALTY_SALE")
    late_grace_s = property(lambda self: self.valid_until_s, doc="CREATE_RANGE")
    offline_local_s = property(lambda self: self.valid_until_s, doc="PURCHASE, offline")
    offline_approval_code = property(lambda self: self.range_name, doc="PURCHASE, offline")
    offline_floor_minor = property(lambda self: self.volume_ml, doc="CREATE_RANGE")
    offline_age_s = property(lambda self: self.odometer, doc="CREATE_RANGE")


RequestRecordView = namedtuple("RequestRecordView", "request reply refunded_minor flags")
Card = namedtuple("Card", "card_id range_id expiry_yyyymm status pan_first6 pan_last4 "
                  "pan_length issued_s activated_s pin_set pin_failures load_day "
                  "loaded_today_minor contract_id profile_id stage issuer_partner",
                  defaults=(0, 0))
Account = namedtuple("Account", "balance_minor pending_minor currency flags "
                     "credits_minor_total debits_minor_total last_journal_seq")
JournalView = namedtuple("JournalView", "request_id debit_owner debit_slot credit_owner "
                         "credit_slot op currency amount_minor time_s reason actor "
                         "partner_id origin_partner", defaults=(0, 0, 0))
Hold = namedtuple("Hold", "card_id range_id status currency held_minor completed_minor "
                  "created_s expires_s counted value_owner volume_ml completed_volume_ml forced "
                  "merchant_code outlet_code")
CardRange = namedtuple("CardRange", "range_id pan_length iin_prefix iin_digits currency name "
                       "pin_tries_max balance_max_minor load_per_day_max_minor numbering "
                       "late_grace_s zone_id utc_offset_min pin_policy offline_floor_minor "
                       "offline_age_s")


cdef inline str _currency(const char* c):
    return c[:strnlen_max(c, CURRENCY_SIZE)].decode("ascii")


cdef inline Py_ssize_t strnlen_max(const char* c, Py_ssize_t n):
    cdef Py_ssize_t i
    for i in range(n):
        if c[i] == 0:
            return i
    return n


cdef inline void _check_size(bytes data, Py_ssize_t expected, str what) except *:
    if len(data) != expected:
        raise ValueError(f"{what} record must be {expected} bytes, got {len(data)}")


def _one_of(*names_values):
    """The value of the one name given (not zero or empty) among names that share bytes
    (called only when a name other than the general one is given: pack_request is on
    every authorization's path)."""
    given = [(n, v) for n, v in zip(names_values[::2], names_values[1::2]) if v]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(n for n, _ in given)} share bytes of the request: "
                         f"give only the one the operation uses")
    return given[0][1] if given else names_values[1]


def pack_request(int op, bytes request_id, *, bytes ref_request_id=None, bytes card_key=None,
                 str currency="", long long amount_minor=0, int target_status=0,
                 unsigned int range_id=0, unsigned int expiry_yyyymm=0,
                 unsigned int pan_first6=0, unsigned int pan_last4=0, int pan_length=0,
                 unsigned long long iin_prefix=0, int iin_digits=0, str range_name="",
                 bytes pin_verifier=None, bint partial_ok=False, int pin_tries_max=0,
                 int reason=0, bint adjust_down=False, long long load_per_day_max_minor=0,
                 unsigned long long valid_until_s=0, bytes payload=None,
                 unsigned int profile_id=0, long long volume_ml=0, odometer=None,
                 unsigned int outlet_code=0, unsigned int contract_id=0, products=(),
                 bint driver_present=False, bint vehicle_present=False, unsigned int actor=0,
                 long long points_tendered=0, int numbering=0, int close_disposition=0,
                 int product_kind=0, int stage=0, int payment_method=0,
                 long long balance_max_minor=0, long long serial_count=0,
                 long long credit_limit_minor=0, unsigned int product_code=0,
                 str product_name="", str partner_name="", unsigned int program_id=0,
                 unsigned int partner_id=0, unsigned int birthday_mmdd=0,
                 unsigned long long late_grace_s=0, unsigned int zone_id=0,
                 int utc_offset_min=0, int pin_policy=0, unsigned int merchant_code=0,
                 bint partner_shares=False, offline_local_s=None, str offline_approval_code="",
                 long long offline_floor_minor=0, long long offline_age_s=0):
    """Pack one core request; the gateway validates values before calling this.

    With a payload (SET_PROFILE, DEFINE_OUTLET, SET_PROGRAM, TRANSFER_POINTS, and a
    terminal's card operations' TransactionDetails) the request is followed by it, and
    its payload_digest (card_payload_digest for a payload naming another card,
    details_digest for details) carries the payload's digest so that a retry with another
    payload is seen. Names that share bytes of the record (core_request.h) are one per operation:
    giving two of them is an error."""
    cdef CoreRequest r
    memset(&r, 0, sizeof(r))
    if len(request_id) != REQUEST_ID_SIZE:
        raise ValueError("request_id must be 16 bytes")
    r.op = op
    r.target_status = target_status
    if numbering or close_disposition or product_kind or stage or payment_method:
        r.target_status = _one_of("target_status", target_status, "numbering", numbering,
                                  "close_disposition", close_disposition, "product_kind",
                                  product_kind, "stage", stage, "payment_method", payment_method)
    r.pan_length = pan_length
    r.iin_digits = iin_digits
    cdef bytes cur = currency.encode("ascii")
    if len(cur) > 3:
        raise ValueError(f"currency must be 3 letters, got {currency!r}")
    strncpy(r.currency, cur, CURRENCY_SIZE)
    r.amount_minor = amount_minor
    if balance_max_minor or serial_count or credit_limit_minor:
        r.amount_minor = _one_of("amount_minor", amount_minor, "balance_max_minor",
                                 balance_max_minor, "serial_count", serial_count,
                                 "credit_limit_minor", credit_limit_minor)
    memcpy(r.request_id, <char*>request_id, REQUEST_ID_SIZE)
    if ref_request_id is not None:
        if len(ref_request_id) != REQUEST_ID_SIZE:
            raise ValueError("ref_request_id must be 16 bytes")
        memcpy(r.ref_request_id, <char*>ref_request_id, REQUEST_ID_SIZE)
    if card_key is not None:
        if len(card_key) != CARD_KEY_SIZE:
            raise ValueError("card_key must be 32 bytes")
        memcpy(r.card_key, <char*>card_key, CARD_KEY_SIZE)
    r.range_id = range_id
    if product_code:
        r.range_id = _one_of("range_id", range_id, "product_code", product_code)
    r.expiry_yyyymm = expiry_yyyymm
    r.pan_first6 = pan_first6
    r.pan_last4 = pan_last4
    r.iin_prefix = iin_prefix
    if product_name or partner_name or offline_approval_code:
        range_name = _one_of("range_name", range_name, "product_name", product_name,
                             "partner_name", partner_name, "offline_approval_code",
                             offline_approval_code)
    cdef bytes name = range_name.encode("utf-8")
    if len(name) > RANGE_NAME_SIZE:
        raise ValueError(f"a name is at most {RANGE_NAME_SIZE} bytes of UTF-8")
    memcpy(r.range_name, <char*>name, len(name))
    if pin_verifier is not None:
        if len(pin_verifier) != PIN_VERIFIER_SIZE:
            raise ValueError(f"pin_verifier must be {PIN_VERIFIER_SIZE} bytes")
        memcpy(r.pin_verifier, <char*>pin_verifier, PIN_VERIFIER_SIZE)
        r.flags |= REQUEST_PIN_PRESENT
    if partial_ok:
        r.flags |= REQUEST_PARTIAL_OK
    if not 0 <= pin_tries_max <= 255:
        raise ValueError("pin_tries_max must be 0 to 255")
    r.pin_tries_max = pin_tries_max
    r.reason = reason
    if pin_policy:
        r.reason = _one_of("reason", reason, "pin_policy", pin_policy)
    r.merchant_code = merchant_code
    if adjust_down:
        r.flags |= REQUEST_ADJUST_DOWN
    r.load_per_day_max_minor = load_per_day_max_minor
    if points_tendered:
        r.load_per_day_max_minor = _one_of("load_per_day_max_minor", load_per_day_max_minor,
                                           "points_tendered", points_tendered)
    r.valid_until_s = valid_until_s
    if late_grace_s:
        r.valid_until_s = _one_of("valid_until_s", valid_until_s, "late_grace_s", late_grace_s)
    if offline_local_s is not None:             # a sale approved offline: a forced post
        r.valid_until_s = _one_of("valid_until_s", valid_until_s, "offline_local_s",
                                  offline_local_s)
        r.flags |= REQUEST_OFFLINE
    r.profile_id = profile_id
    if program_id or partner_id or birthday_mmdd or zone_id:
        r.profile_id = _one_of("profile_id", profile_id, "program_id", program_id,
                               "partner_id", partner_id, "birthday_mmdd", birthday_mmdd,
                               "zone_id", zone_id)
    r.utc_offset_min = utc_offset_min
    r.volume_ml = volume_ml
    if offline_floor_minor:
        r.volume_ml = _one_of("volume_ml", volume_ml, "offline_floor_minor", offline_floor_minor)
    if odometer is not None:
        r.odometer = odometer
        r.flags |= REQUEST_ODOMETER_PRESENT
    if offline_age_s:
        r.odometer = _one_of("odometer", r.odometer, "offline_age_s", offline_age_s)
    if driver_present:
        r.flags |= REQUEST_DRIVER_PRESENT
    if vehicle_present:
        r.flags |= REQUEST_VEHICLE_PRESENT
    if partner_shares:
        r.flags |= REQUEST_PARTNER_SHARES
    r.outlet_code = outlet_code
    r.contract_id = contract_id
    r.actor = actor
    for code in products:
        if not 0 <= code < PRODUCT_SET_SIZE * 8:
            raise ValueError(f"product codes are 0 to {PRODUCT_SET_SIZE * 8 - 1}, got {code}")
        r.products[code >> 3] |= 1 << (code & 7)
    if payload is None:
        return (<char*>&r)[:sizeof(r)]
    if len(payload) > 0xFFFF:
        raise ValueError("payload is at most 65535 bytes")
    r.payload_size = len(payload)
    digest = hashlib.sha256(payload).digest()
    if op in (OP_TRANSFER_POINTS, OP_REPLACE_CARD, OP_DEACTIVATE):  # card_key names the card
        memcpy(r.card_payload_digest, <char*>digest, REQUEST_ID_SIZE)
    elif op in _DETAILED_OPS:           # a terminal's operation: its TransactionDetails
        memcpy(r.details_digest, <char*>digest, REQUEST_ID_SIZE)
    else:
        memcpy(r.payload_digest, <char*>digest, CARD_KEY_SIZE)
    return (<char*>&r)[:sizeof(r)] + payload


cdef object _reply(const CoreReply* p):
    return Reply(p.result, p.op, p.card_status, _currency(p.currency), p.approved_minor,
                 p.balance_minor, p.pending_minor, p.card_id, p.journal_seq, p.approval_code,
                 p.pan_first6, p.pan_last4, p.pan_length, p.expiry_yyyymm, p.prompts_missing,
                 p.limit_hit, p.volume_ml, p.credit_limit_minor, p.review, p.tier,
                 p.earn_flags, p.discount_bp, p.points_earned, p.discount_minor,
                 p.lifetime_spend_minor, p.points_seq, p.points_redeemed, p.points_value_minor,
                 p.points_balance)


cdef object _request(const CoreRequest* p):
    return RequestView(p.op, p.target_status, _currency(p.currency), p.amount_minor,
                       (<char*>p.request_id)[:REQUEST_ID_SIZE],
                       (<char*>p.ref_request_id)[:REQUEST_ID_SIZE],
                       (<char*>p.card_key)[:CARD_KEY_SIZE], p.range_id, p.expiry_yyyymm,
                       p.pan_first6, p.pan_last4, p.pan_length,
                       (<char*>p.pin_verifier)[:PIN_VERIFIER_SIZE]
                       if p.flags & REQUEST_PIN_PRESENT else None,
                       bool(p.flags & REQUEST_PARTIAL_OK), p.pin_tries_max, p.reason,
                       bool(p.flags & REQUEST_ADJUST_DOWN), p.load_per_day_max_minor,
                       p.valid_until_s, p.payload_size, p.profile_id, p.volume_ml,
                       p.odometer if p.flags & REQUEST_ODOMETER_PRESENT else None,
                       p.outlet_code, p.contract_id,
                       product_set((<char*>p.products)[:PRODUCT_SET_SIZE]),
                       bool(p.flags & REQUEST_DRIVER_PRESENT),
                       bool(p.flags & REQUEST_VEHICLE_PRESENT), p.actor,
                       p.range_name[:strnlen_max(p.range_name, RANGE_NAME_SIZE)], p.iin_digits,
                       p.utc_offset_min, p.merchant_code)


def unpack_reply(bytes data):
    _check_size(data, sizeof(CoreReply), "reply")
    return _reply(<const CoreReply*><const char*>data)


def unpack_replies(bytes data):
    """Split a batch answer of ``apply_batch`` into Reply tuples, in request order."""
    if len(data) % sizeof(CoreReply):
        raise ValueError("batch answer is not a whole number of replies")
    cdef const char* base = data
    return [_reply(<const CoreReply*>(base + i)) for i in range(0, len(data), sizeof(CoreReply))]


def unpack_request(bytes data):
    """A request as packed: the CoreRequest, then its payload if it has one."""
    if len(data) < sizeof(CoreRequest) or \
            len(data) != sizeof(CoreRequest) + (<const CoreRequest*><const char*>data).payload_size:
        raise ValueError(f"request record must be {sizeof(CoreRequest)} bytes and its payload, "
                         f"got {len(data)}")
    return _request(<const CoreRequest*><const char*>data)


def unpack_request_record(bytes data):
    _check_size(data, sizeof(RequestRecord), "request")
    cdef const RequestRecord* p = <const RequestRecord*><const char*>data
    return RequestRecordView(_request(&p.request), _reply(&p.reply), p.refunded_minor, p.flags)
