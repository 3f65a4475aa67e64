# What the checks of single requests share (each operation's own check sits beside its
# handler, and ledger.pyx's table pairs them): sizes, amount ranges, and the digest that
# binds a payload to its request.


cdef inline bint no_payload(const CoreRequest* rq):
    return rq.payload_size == 0


cdef inline bint positive_amount(const CoreRequest* rq):
    return 0 < rq.amount_minor <= AMOUNT_MINOR_MAX


cdef inline bint refers_elsewhere(const CoreRequest* rq):
    """A request that names an earlier one never names itself."""
    return memcmp(rq.ref_request_id, rq.request_id, REQUEST_ID_SIZE) != 0


cdef bint check_no_payload(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq)


cdef bint check_quantity_moved(const CoreRequest* rq, const char* payload) except -1:
    """The whole check of an operation that moves a positive quantity and needs nothing
    more (load, refund, adjust, units used, points earned, redeemed, adjusted, reserved)."""
    return no_payload(rq) and positive_amount(rq)


cdef bint payload_digest_matches(const CoreRequest* rq, const char* payload) except -1:
    """A configuration payload is the one whose digest the request carries (card_key)."""
    return hashlib.sha256(payload[:rq.payload_size]).digest() == _bytes(rq.payload_digest,
                          CARD_KEY_SIZE)


cdef bint card_payload_matches(const CoreRequest* rq, const char* payload) except -1:
    """A payload naming another card (its key) matches the digest the request carries
    (card_payload_digest) and is not the request's own card."""
    digest = hashlib.sha256(payload[:rq.payload_size]).digest()
    return digest[:REQUEST_ID_SIZE] == _bytes(rq.card_payload_digest, REQUEST_ID_SIZE) and \
        memcmp(payload, rq.card_key, CARD_KEY_SIZE) != 0


cdef inline bint foreign(const CoreRequest* rq, uint32_t original_merchant):
    """A request that names an earlier one acts only on its own merchant's requests; one
    made for no merchant (an operator's) acts on any."""
    return rq.merchant_code != 0 and rq.merchant_code != original_merchant


cdef bint foreign_to(BatchContext batch, const CoreRequest* rq, uint32_t original_merchant,
                     uint32_t original_outlet) except -1:
    """foreign(), unless both outlets belong to one coalition partner that lets its
    outlets act on each other's requests (DefinePartner shares_requests)."""
    if not foreign(rq, original_merchant):
        return False
    cdef uint32_t partner = partner_of(batch, rq.outlet_code)
    return not (partner and partner == partner_of(batch, original_outlet) and
                batch.get(config_key_of(b'S', partner), batch.db_config) is not None)


cdef int decline_foreign(const CoreRequest* rq, CoreReply* rp) except -1:
    """The answer to a request naming another merchant's: declined, and nothing of the
    original in it (no card, amount or balance)."""
    memset(rp, 0, sizeof(CoreReply))
    rp.op = rq.op
    rp.result = RESULT_DECLINED_NOT_OWN_REQUEST
    return 0


cdef inline bint fuel_fields_valid(const CoreRequest* rq):
    """Volume and odometer within their limits (sales, holds, completions)."""
    if not 0 <= rq.volume_ml <= VOLUME_ML_MAX:
        return False
    return not (rq.flags & REQUEST_ODOMETER_PRESENT) or 0 <= rq.odometer <= ODOMETER_MAX
