# Fleet cards: contracts, restriction profiles (products, places, days, prompts) and the
# usage counters their limits are checked against.

cdef int release_reservation(const HoldRecord* hold, UsageRecord* usage) except -1:
    """Take back what a counted hold reserved against the card's fleet limits."""
    usage.pending[0] -= hold.held_minor
    usage.pending[1] -= hold.volume_ml
    usage.pending[2] -= 1
    require(usage.pending[0] >= 0 and usage.pending[1] >= 0 and usage.pending[2] >= 0,
            "fleet reservations below zero")
    return 0


cdef void period_indexes(int64_t local_s, uint32_t* index):
    """Day, week (Monday first), month (YYYYMM) and lifetime of a local time."""
    cdef int64_t day = local_s // 86400
    index[0] = <uint32_t>day
    index[1] = <uint32_t>((day + 3) // 7)
    index[2] = yyyymm_of_day(day)
    index[3] = 1


cdef int read_contract(BatchContext batch, uint32_t contract_id, ContractRecord* out) except -1:
    value = batch.get(config_key_of(b'C', contract_id), batch.db_config)
    require(value is not None and len(value) == sizeof(ContractRecord),
            "card of a missing contract")
    memcpy(out, <const char*>value, sizeof(ContractRecord))
    return 0


cdef bint read_usage(BatchContext batch, uint64_t card_id, UsageRecord* out) except -1:
    value = batch.get(u64_be(card_id), batch.db_usage)
    if value is None:
        memset(out, 0, sizeof(UsageRecord))
        return False
    require(len(value) == sizeof(UsageRecord), "corrupt usage record")
    memcpy(out, <const char*>value, sizeof(UsageRecord))
    return True


cdef int write_usage(BatchContext batch, uint64_t card_id, const UsageRecord* usage) except -1:
    batch.put(u64_be(card_id), _bytes(usage, sizeof(UsageRecord)), batch.db_usage)
    return 0


cdef bint load_fleet(BatchContext batch, const CardRecord* card, Fleet* fleet) except -1:
    """The card's restriction profile (its own, else its contract's) and its usage,
    counters rolled to the current periods; False for a card without a profile."""
    cdef ContractRecord contract
    cdef uint32_t profile_id = card.profile_id
    cdef uint32_t index[COUNTED_PERIODS]
    cdef int p, m
    if not profile_id and card.contract_id:
        read_contract(batch, card.contract_id, &contract)
        profile_id = contract.profile_id
    if not profile_id:
        return False
    value = batch.get(config_key_of(b'F', profile_id), batch.db_config)
    require(value is not None and len(value) == sizeof(ProfileRecord), "card of a missing profile")
    memcpy(&fleet.profile, <const char*>value, sizeof(ProfileRecord))
    fleet.local_s = <int64_t>batch.now_s + offset_at(batch, fleet.profile.zone_id,
                                                     fleet.profile.utc_offset_min, batch.now_s)
    read_usage(batch, card.card_id, &fleet.usage)
    period_indexes(fleet.local_s, index)
    for p in range(COUNTED_PERIODS):
        if fleet.usage.period_index[p] != index[p]:
            fleet.usage.period_index[p] = index[p]
            for m in range(LIMIT_MEASURES):
                fleet.usage.used[p * LIMIT_MEASURES + m] = 0
    return True


cdef int read_catalog(BatchContext batch, CatalogRecord* catalog) except -1:
    value = batch.get(CATALOG_KEY, batch.db_config)
    if value is None:
        memset(catalog, 0, sizeof(CatalogRecord))
    else:
        memcpy(catalog, <const char*>value, sizeof(CatalogRecord))
    return 0


cdef bint known_products(BatchContext batch, const CoreRequest* rq) except -1:
    """Every product code of the request is in the catalog (read only when it names any)."""
    cdef CatalogRecord catalog
    cdef int i
    for i in range(PRODUCT_SET_SIZE):
        if rq.products[i]:
            break
    else:
        return True
    read_catalog(batch, &catalog)
    for i in range(PRODUCT_SET_SIZE):
        if rq.products[i] & ~catalog.known[i]:
            return False
    return True


cdef bint products_allowed(BatchContext batch, const CoreRequest* rq,
                           const ProfileRecord* profile) except -1:
    """Every product of the sale is allowed. A sale without product data passes only
    where the profile restricts nothing (a pre-authorization's products are a hint:
    its completion says what was sold)."""
    cdef CatalogRecord catalog
    cdef int i
    cdef uint8_t fuel, other
    cdef bint any_product = False
    read_catalog(batch, &catalog)
    for i in range(PRODUCT_SET_SIZE):
        if not rq.products[i]:
            continue
        any_product = True
        fuel = rq.products[i] & catalog.fuel[i]
        other = rq.products[i] & ~catalog.fuel[i]
        if other and not profile.flags & PROFILE_NONFUEL_ALLOWED:
            return False
        if fuel & ~profile.allowed_products[i] and profile.flags & PROFILE_FUELS_RESTRICTED:
            return False
    if any_product or rq.op == OP_PREAUTH:
        return True
    return not (profile.flags & PROFILE_FUELS_RESTRICTED) and \
        profile.flags & PROFILE_NONFUEL_ALLOWED


cdef bint place_allowed(BatchContext batch, uint32_t outlet_code,
                        const ProfileRecord* profile) except -1:
    cdef OutletRecord outlet
    cdef uint32_t region = 0
    cdef int i
    if outlet_code:
        value = batch.get(config_key_of(b'O', outlet_code), batch.db_config)
        if value is not None:
            memcpy(&outlet, <const char*>value, sizeof(outlet))
            region = outlet.region_code
    for i in range(profile.place_count):
        if outlet_code and profile.places[i] == outlet_code:
            return True
        if region and profile.places[i] == region:
            return True
    return False


cdef uint8_t fleet_rules(BatchContext batch, const CoreRequest* rq, const Fleet* fleet,
                         CoreReply* rp) except 255:
    """Products, outlet, day and hour, then the prompts the profile requires."""
    cdef const ProfileRecord* profile = &fleet.profile
    cdef uint8_t present = 0
    if not products_allowed(batch, rq, profile):
        return RESULT_DECLINED_PRODUCT_NOT_ALLOWED
    if profile.place_count and not place_allowed(batch, rq.outlet_code, profile):
        return RESULT_DECLINED_OUTLET_NOT_ALLOWED
    if not in_schedule(profile.days_mask, profile.minute_from, profile.minute_to,
                       fleet.local_s):
        return RESULT_DECLINED_TIME_NOT_ALLOWED
    if rq.flags & REQUEST_PIN_PRESENT:
        present |= PROMPT_PIN
    if rq.flags & REQUEST_ODOMETER_PRESENT:
        present |= PROMPT_ODOMETER
    if rq.flags & REQUEST_DRIVER_PRESENT:
        present |= PROMPT_DRIVER
    if rq.flags & REQUEST_VEHICLE_PRESENT:
        present |= PROMPT_VEHICLE
    if profile.prompts & ~present:
        rp.prompts_missing = profile.prompts & ~present
        return RESULT_DECLINED_PROMPT_REQUIRED
    return 0


cdef uint8_t fleet_limits(BatchContext batch, const CoreRequest* rq, const Fleet* fleet,
                          CoreReply* rp,
                          int64_t* amount, int64_t* volume) except 255:
    """The odometer, then the hard limits, pessimistically: what was used in each
    period plus what open holds reserve plus this request. Where the terminal takes a
    partial approval the money (and a pre-authorization's volume) is cut to what the
    limits leave; a pre-authorization without a volume reserves what they leave."""
    cdef const ProfileRecord* profile = &fleet.profile
    cdef int64_t room[LIMIT_MEASURES]
    cdef int tightest[LIMIT_MEASURES]
    cdef int64_t this[LIMIT_MEASURES]
    cdef int64_t before
    cdef int idx, p, m
    if rq.flags & REQUEST_ODOMETER_PRESENT and fleet.usage.odometer_set and \
            rq.odometer < fleet.usage.odometer:
        return RESULT_DECLINED_ODOMETER_BACKWARDS
    for m in range(LIMIT_MEASURES):
        room[m] = INT64_MAX
        tightest[m] = -1
    for idx in range(LIMIT_PERIODS * LIMIT_MEASURES):
        if profile.limits[idx] <= 0 or profile.soft_mask >> idx & 1:
            continue
        p = idx // LIMIT_MEASURES
        m = idx % LIMIT_MEASURES
        before = 0 if p == 0 else \
            fleet.usage.used[(p - 1) * LIMIT_MEASURES + m] + fleet.usage.pending[m]
        if profile.limits[idx] - before < room[m]:
            room[m] = profile.limits[idx] - before
            tightest[m] = idx
    this[0] = amount[0]
    this[1] = volume[0]
    this[2] = 1
    for m in range(LIMIT_MEASURES):
        if tightest[m] < 0:
            continue
        if m == 1 and rq.op == OP_PREAUTH and this[1] == 0:
            if room[1] <= 0:             # no litres left for the pump to dispense
                rp.limit_hit = tightest[1] + 1
                return RESULT_DECLINED_LIMIT_EXCEEDED
            this[1] = room[1]            # the pump stops where the limits do
        elif this[m] > (room[m] if room[m] > 0 else 0):   # (a sale of no litres passes)
            if rq.flags & REQUEST_PARTIAL_OK and room[m] > 0 and \
                    (m == 0 or (m == 1 and rq.op == OP_PREAUTH)):
                this[m] = room[m]
            else:
                rp.limit_hit = tightest[m] + 1
                return RESULT_DECLINED_LIMIT_EXCEEDED
    amount[0] = this[0]
    volume[0] = this[1]
    return 0


cdef int count_usage(BatchContext batch, const CoreRequest* rq, uint64_t card_id, Fleet* fleet,
                     int64_t amount, int64_t volume, bint reserve) except -1:
    """Count an approved sale in every period (or reserve it for an open hold), and
    keep the odometer reading."""
    cdef int p
    cdef UsageRecord* usage = &fleet.usage
    if reserve:
        usage.pending[0] += amount
        usage.pending[1] += volume
        usage.pending[2] += 1
    else:
        for p in range(COUNTED_PERIODS):
            usage.used[p * LIMIT_MEASURES] += amount
            usage.used[p * LIMIT_MEASURES + 1] += volume
            usage.used[p * LIMIT_MEASURES + 2] += 1
    if rq.flags & REQUEST_ODOMETER_PRESENT:
        usage.odometer = rq.odometer
        usage.odometer_set = 1
    write_usage(batch, card_id, usage)
    return 0


cdef int flag_soft(BatchContext batch, const Fleet* fleet, int64_t amount, int64_t volume,
                   CoreReply* rp) except -1:
    """After counting: past a soft limit, the approval is flagged for review."""
    cdef const ProfileRecord* profile = &fleet.profile
    cdef int64_t this[LIMIT_MEASURES]
    cdef int64_t value
    cdef int idx, p, m
    this[0] = amount
    this[1] = volume
    this[2] = 1
    for idx in range(LIMIT_PERIODS * LIMIT_MEASURES):
        if profile.limits[idx] <= 0 or not profile.soft_mask >> idx & 1:
            continue
        p = idx // LIMIT_MEASURES
        m = idx % LIMIT_MEASURES
        value = this[m] if p == 0 else \
            fleet.usage.used[(p - 1) * LIMIT_MEASURES + m] + fleet.usage.pending[m]
        if value > profile.limits[idx]:
            rp.review |= REVIEW_SOFT_LIMIT
            rp.limit_hit = idx + 1
            return 0
    return 0


cdef int uncount_purchase(BatchContext batch, const CardRecord* card,
                          const RequestRecord* original) except -1:
    """A reversed purchase no longer counts in the periods it was counted in."""
    cdef UsageRecord usage
    cdef Fleet fleet
    cdef JournalEntry entry
    cdef uint32_t index[COUNTED_PERIODS]
    cdef int64_t offset_s = 0, volume = original.request.volume_ml
    cdef int p
    if not read_usage(batch, card.card_id, &usage):
        return 0
    value = batch.get(u64_be(original.reply.journal_seq), batch.db_journal)
    require(value is not None, "approved purchase without journal entry")
    memcpy(&entry, <const char*>value, sizeof(entry))
    if load_fleet(batch, card, &fleet):       # its periods in the local time of the sale
        offset_s = offset_at(batch, fleet.profile.zone_id, fleet.profile.utc_offset_min,
                             entry.time_s)
    period_indexes(<int64_t>entry.time_s + offset_s, index)
    for p in range(COUNTED_PERIODS):
        if usage.period_index[p] != index[p]:
            continue
        usage.used[p * LIMIT_MEASURES] = max(0, usage.used[p * LIMIT_MEASURES] -
                                             original.reply.approved_minor)
        usage.used[p * LIMIT_MEASURES + 1] = max(0, usage.used[p * LIMIT_MEASURES + 1] - volume)
        usage.used[p * LIMIT_MEASURES + 2] = max(0, usage.used[p * LIMIT_MEASURES + 2] - 1)
    write_usage(batch, card.card_id, &usage)
    return 0
