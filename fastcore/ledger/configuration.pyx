# Configuration kept in the store: the product catalog, restriction profiles, outlets,
# contracts, card assignments, loyalty programs, earn rules and partners.


cdef bint check_define_product(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and rq.product_code < PRODUCT_SET_SIZE * 8 and \
        rq.product_kind in (PRODUCT_FUEL, PRODUCT_OTHER)


cdef int define_product(BatchContext batch, const CoreRequest* rq, const char* payload,
                        CoreReply* rp) except -1:
    cdef CatalogRecord catalog
    cdef uint32_t code = rq.product_code
    read_catalog(batch, &catalog)
    catalog.known[code >> 3] |= 1 << (code & 7)
    if rq.product_kind == PRODUCT_FUEL:
        catalog.fuel[code >> 3] |= 1 << (code & 7)
    else:
        catalog.fuel[code >> 3] &= ~(1 << (code & 7))
    batch.put(CATALOG_KEY, _bytes(&catalog, sizeof(catalog)), batch.db_config)
    batch.put(config_key_of(b'P', code),
              bytes([rq.product_kind]) + _bytes(rq.product_name, RANGE_NAME_SIZE), batch.db_config)
    approve(batch, rq, rp, 0, 0)
    return 0


cdef bint check_set_profile(const CoreRequest* rq, const char* payload) except -1:
    cdef const ProfileRecord* profile = <const ProfileRecord*>payload
    cdef int i
    if rq.payload_size != sizeof(ProfileRecord) or rq.profile_id == 0 or \
            not payload_digest_matches(rq, payload):
        return False
    if profile.profile_id != rq.profile_id or profile.place_count > PROFILE_PLACES_MAX or \
            profile.minute_from > 1440 or profile.minute_to > 1440 or \
            profile.days_mask >= 128 or profile.prompts >= 16 or \
            profile.utc_offset_min < -1440 or profile.utc_offset_min > 1440:
        return False
    for i in range(LIMIT_PERIODS * LIMIT_MEASURES):
        if profile.limits[i] < 0:
            return False
    return True


cdef int set_profile(BatchContext batch, const CoreRequest* rq, const char* payload,
                     CoreReply* rp) except -1:
    cdef const ProfileRecord* profile = <const ProfileRecord*>payload
    cdef CatalogRecord catalog
    cdef int i
    read_catalog(batch, &catalog)
    for i in range(PRODUCT_SET_SIZE):
        if profile.allowed_products[i] & ~catalog.known[i]:
            rp.result = RESULT_REJECTED_UNKNOWN_PRODUCT
            return 0
    if not zone_known(batch, profile.zone_id):
        rp.result = RESULT_DECLINED_UNKNOWN_ZONE
        return 0
    batch.put(config_key_of(b'F', rq.profile_id), _bytes(payload, sizeof(ProfileRecord)),
              batch.db_config)
    approve(batch, rq, rp, 0, 0)
    return 0


cdef bint check_define_outlet(const CoreRequest* rq, const char* payload) except -1:
    return rq.payload_size == sizeof(OutletRecord) and rq.outlet_code != 0 and \
        payload_digest_matches(rq, payload) and \
        (<const OutletRecord*>payload).outlet_code == rq.outlet_code


cdef int define_outlet(BatchContext batch, const CoreRequest* rq, const char* payload,
                       CoreReply* rp) except -1:
    cdef const OutletRecord* outlet = <const OutletRecord*>payload
    key = config_key_of(b'O', rq.outlet_code)
    value = batch.get(key, batch.db_config)
    if value is not None and (
            memcmp(<const char*>value + 8, outlet.name, OUTLET_NAME_SIZE) != 0 or
            (<const OutletRecord*><const char*>value).partner_id != outlet.partner_id):
        rp.result = RESULT_DECLINED_OUTLET_CODE_TAKEN       # another outlet, or partner
        return 0
    if not configured(batch, b'N', outlet.partner_id):
        rp.result = RESULT_DECLINED_UNKNOWN_PARTNER
        return 0
    batch.put(key, _bytes(payload, sizeof(OutletRecord)), batch.db_config)
    batch.partners.clear()
    approve(batch, rq, rp, 0, 0)
    return 0


cdef bint configured(BatchContext batch, char kind, uint32_t id_) except -1:
    """No reference (0), or one to a record the configuration has ('F' profile, 'N'
    partner, 'O' outlet, 'G' program)."""
    return id_ == 0 or batch.get(config_key_of(kind, id_), batch.db_config) is not None


cdef bint check_set_contract(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and rq.contract_id != 0 and \
        0 <= rq.credit_limit_minor <= BALANCE_MINOR_MAX


cdef int set_contract(BatchContext batch, const CoreRequest* rq, const char* payload,
                      CoreReply* rp) except -1:
    cdef ContractRecord contract
    cdef AccountRecord acc
    cdef uint64_t owner = CONTRACT_OWNER_BASE + rq.contract_id
    if not configured(batch, b'F', rq.profile_id):
        rp.result = RESULT_DECLINED_UNKNOWN_PROFILE
        return 0
    key = config_key_of(b'C', rq.contract_id)
    value = batch.get(key, batch.db_config)
    if value is None:
        memset(&acc, 0, sizeof(acc))
        memcpy(acc.currency, rq.currency, CURRENCY_SIZE)
        write_account(batch, owner, SLOT_CARD_VALUE, &acc)
        write_account(batch, owner, SLOT_CARD_HELD, &acc)
    else:
        memcpy(&contract, <const char*>value, sizeof(contract))
        if memcmp(contract.currency, rq.currency, CURRENCY_SIZE) != 0:
            rp.result = RESULT_DECLINED_CURRENCY_MISMATCH
            return 0
        read_account(batch, owner, SLOT_CARD_VALUE, &acc)
        if acc.balance_minor + rq.credit_limit_minor < 0:
            rp.result = RESULT_DECLINED_CREDIT_LIMIT_EXCEEDED   # already drawn further
            return 0
    memset(&contract, 0, sizeof(contract))
    contract.contract_id = rq.contract_id
    contract.profile_id = rq.profile_id
    memcpy(contract.currency, rq.currency, CURRENCY_SIZE)
    contract.credit_limit_minor = rq.credit_limit_minor
    batch.put(key, _bytes(&contract, sizeof(contract)), batch.db_config)
    memcpy(rp.currency, rq.currency, CURRENCY_SIZE)
    approve(batch, rq, rp, 0, 0)
    return 0


cdef int assign_card(BatchContext batch, const CoreRequest* rq, const char* payload,
                     CoreReply* rp) except -1:
    cdef CardRecord card
    cdef ContractRecord contract
    cdef AccountRecord value_acc, held_acc
    cdef uint8_t bad = open_card(batch, rq, &card, rp)
    if bad:
        rp.result = bad
        return 0
    if not configured(batch, b'F', rq.profile_id):
        rp.result = RESULT_DECLINED_UNKNOWN_PROFILE
        return 0
    if rq.contract_id:
        value = batch.get(config_key_of(b'C', rq.contract_id), batch.db_config)
        if value is None:
            rp.result = RESULT_DECLINED_UNKNOWN_CONTRACT
            return 0
        memcpy(&contract, <const char*>value, sizeof(contract))
        if memcmp(contract.currency, rp.currency, CURRENCY_SIZE) != 0:
            rp.result = RESULT_DECLINED_CURRENCY_MISMATCH
            return 0
    if rq.contract_id != card.contract_id and not card.contract_id:
        # The card's own value would be out of reach: it must be spent or cleared first.
        read_account(batch, card.card_id, SLOT_CARD_VALUE, &value_acc)
        read_account(batch, card.card_id, SLOT_CARD_HELD, &held_acc)
        if value_acc.balance_minor or held_acc.balance_minor:
            rp.result = RESULT_DECLINED_BALANCE_NOT_ZERO
            return 0
    card.profile_id = rq.profile_id
    card.contract_id = rq.contract_id
    if rq.contract_id and card.status == CARD_ISSUED:
        # A card that draws on a contract's credit is usable at once: nothing needs to
        # be loaded onto it to activate it.
        card.status = CARD_ACTIVE
        card.activated_s = batch.now_s
    write_card(batch, &card)
    approve(batch, rq, rp, 0, 0, &card)
    return 0


cdef bint check_set_program(const CoreRequest* rq, const char* payload) except -1:
    return rq.payload_size == sizeof(ProgramRecord) and payload_digest_matches(rq, payload) and \
        valid_program(<const ProgramRecord*>payload, AMOUNT_MINOR_MAX)


cdef int set_program(BatchContext batch, const CoreRequest* rq, const char* payload,
                     CoreReply* rp) except -1:
    cdef const ProgramRecord* program = <const ProgramRecord*>payload
    cdef ProgramRecord old
    cdef int i
    if not zone_known(batch, program.zone_id):
        rp.result = RESULT_DECLINED_UNKNOWN_ZONE
        return 0
    for i in range(program.range_count):
        if batch.get(range_key_of(program.range_ids[i]), batch.db_config) is None:
            rp.result = RESULT_DECLINED_UNKNOWN_CARD_RANGE
            return 0
        link = batch.get(config_key_of(b'g', program.range_ids[i]), batch.db_config)
        if link is not None and int.from_bytes(link, "little") != program.program_id:
            rp.result = RESULT_DECLINED_RANGE_IN_ANOTHER_PROGRAM
            return 0
    key = config_key_of(b'G', program.program_id)
    value = batch.get(key, batch.db_config)
    if value is not None:                        # ranges it no longer covers leave it
        memcpy(&old, <const char*>value, sizeof(old))
        for i in range(old.range_count):
            batch.delete(config_key_of(b'g', old.range_ids[i]), batch.db_config)
    for i in range(program.range_count):
        batch.put(config_key_of(b'g', program.range_ids[i]),
                 (<uint32_t>program.program_id).to_bytes(4, "little"), batch.db_config)
    batch.put(key, _bytes(payload, sizeof(ProgramRecord)), batch.db_config)
    batch.programs.clear()                # read again by the batch's next sales
    approve(batch, rq, rp, 0, 0)
    return 0


cdef bint check_set_rules(const CoreRequest* rq, const char* payload) except -1:
    cdef int i
    if rq.program_id == 0 or rq.payload_size % sizeof(EarnRule) != 0 or \
            rq.payload_size > RULES_MAX * sizeof(EarnRule):
        return False
    if rq.payload_size == 0:
        return True                         # a program without rules
    if not payload_digest_matches(rq, payload):
        return False
    for i in range(rq.payload_size // sizeof(EarnRule)):
        if not valid_rule(<const EarnRule*>(payload + i * sizeof(EarnRule)), AMOUNT_MINOR_MAX):
            return False
    return True


cdef int set_rules(BatchContext batch, const CoreRequest* rq, const char* payload,
                   CoreReply* rp) except -1:
    """Replace a program's earn rules; every outlet and product they name must exist."""
    cdef const EarnRule* rule
    cdef CatalogRecord catalog
    cdef int i, j
    if not configured(batch, b'G', rq.program_id):       # (valid() refused program 0)
        rp.result = RESULT_DECLINED_UNKNOWN_PROGRAM
        return 0
    read_catalog(batch, &catalog)
    for i in range(rq.payload_size // sizeof(EarnRule)):
        rule = <const EarnRule*>(payload + i * sizeof(EarnRule))
        for j in range(rule.place_count):
            if rule.outlets[j] == 0 or not configured(batch, b'O', rule.outlets[j]):
                rp.result = RESULT_DECLINED_UNKNOWN_OUTLET
                return 0
        if rule.scope == SCOPE_PARTNER and not configured(batch, b'N', rule.partner_id):
            rp.result = RESULT_DECLINED_UNKNOWN_PARTNER
            return 0
        for j in range(PRODUCT_SET_SIZE):
            if rule.products[j] & ~catalog.known[j]:
                rp.result = RESULT_REJECTED_UNKNOWN_PRODUCT
                return 0
    batch.put(config_key_of(b'E', rq.program_id), payload[:rq.payload_size], batch.db_config)
    batch.programs.clear()
    approve(batch, rq, rp, 0, 0)
    return 0


cdef bint check_define_partner(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and rq.partner_id != 0 and rq.partner_name[0] != 0


cdef int define_partner(BatchContext batch, const CoreRequest* rq, const char* payload,
                        CoreReply* rp) except -1:
    """A loyalty partner (a merchant company): its number and name (renaming is fine),
    and whether its outlets act on each other's requests ('S', present: they do)."""
    batch.put(config_key_of(b'N', rq.partner_id), _bytes(rq.partner_name, RANGE_NAME_SIZE),
              batch.db_config)
    shares = config_key_of(b'S', rq.partner_id)
    if rq.flags & REQUEST_PARTNER_SHARES:
        batch.put(shares, b"\x01", batch.db_config)
    elif batch.get(shares, batch.db_config) is not None:
        batch.delete(shares, batch.db_config)
    approve(batch, rq, rp, 0, 0)
    return 0
