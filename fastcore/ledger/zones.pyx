# Local time: IANA time zones as tables of UTC offsets over time (DEFINE_ZONE; the
# gateway compiles them from tzdata), or a fixed offset where no zone is named. Loyalty
# programs, fleet profiles and card ranges each have their local time.

cdef int32_t ZONE_OFFSET_MAX_S = 26 * 3600


cdef bint check_define_zone(const CoreRequest* rq, const char* payload) except -1:
    """A name, then entries ascending by from_s with offsets within +-26 h."""
    cdef Py_ssize_t size = <Py_ssize_t>rq.payload_size - ZONE_NAME_SIZE
    cdef const ZoneEntry* entries = <const ZoneEntry*>(payload + ZONE_NAME_SIZE)
    cdef Py_ssize_t i, n = size // <Py_ssize_t>sizeof(ZoneEntry)
    if rq.zone_id == 0 or size <= 0 or size % sizeof(ZoneEntry) or \
            not payload_digest_matches(rq, payload):
        return False
    for i in range(n):
        if not -ZONE_OFFSET_MAX_S <= entries[i].offset_s <= ZONE_OFFSET_MAX_S or \
                (i and entries[i].from_s <= entries[i - 1].from_s):
            return False
    return True


cdef int define_zone(BatchContext batch, const CoreRequest* rq, const char* payload,
                     CoreReply* rp) except -1:
    batch.put(config_key_of(b'Z', rq.zone_id), payload[:rq.payload_size], batch.db_config)
    batch.zones.pop(rq.zone_id, None)
    approve(batch, rq, rp, 0, 0)
    return 0


cdef bint zone_known(BatchContext batch, uint32_t zone_id) except -1:
    """A zone configuration may name: none (0), or one defined."""
    return zone_id == 0 or zone_table(batch, zone_id) is not None


cdef bytes zone_table(BatchContext batch, uint32_t zone_id):
    """The zone's entries (ZoneEntry[]), read once per batch; None if not defined."""
    table = batch.zones.get(zone_id, False)
    if table is False:
        value = batch.get(config_key_of(b'Z', zone_id), batch.db_config)
        table = None if value is None else value[ZONE_NAME_SIZE:]
        batch.zones[zone_id] = table
    return table


cdef int64_t offset_at(BatchContext batch, uint32_t zone_id, int32_t fixed_min,
                       int64_t utc_s) except? -999999:
    """Seconds to add to utc_s for the local time there: the zone's offset in force at
    utc_s, or the fixed offset when no zone is named."""
    cdef bytes table
    cdef const ZoneEntry* entries
    cdef Py_ssize_t lo, hi, middle
    if zone_id == 0:
        return <int64_t>fixed_min * 60
    table = zone_table(batch, zone_id)
    if table is None:
        raise InvariantViolated("configuration names a zone never defined")
    entries = <const ZoneEntry*><const char*>table
    lo, hi = 0, len(table) // sizeof(ZoneEntry)       # the last entry with from_s <= utc_s
    while hi - lo > 1:
        middle = (lo + hi) // 2
        if entries[middle].from_s <= utc_s:
            lo = middle
        else:
            hi = middle
    return entries[lo].offset_s


cdef int64_t utc_of_local(BatchContext batch, uint32_t zone_id, int32_t fixed_min,
                          int64_t local_s) except? -999999:
    """The UTC second showing local_s there (a local time in a gap or fold: the offset
    in force just after the change)."""
    cdef int64_t guess = local_s - offset_at(batch, zone_id, fixed_min, local_s)
    return local_s - offset_at(batch, zone_id, fixed_min, guess)


cdef int64_t range_local_day(BatchContext batch, uint32_t range_id,
                             uint32_t* yyyymm) except? -1:
    """The card range's local day (days since 1970) and month (yyyymm) at the batch's
    time: what card expiry and daily load limits count by. A range in UTC keeps the
    batch's own month."""
    cdef RangeRecord rng
    cdef int64_t local_s
    found = batch.ranges.get(range_id)
    if found is None:
        read_range(batch, range_id, &rng)
        local_s = <int64_t>batch.now_s + offset_at(batch, rng.zone_id, rng.utc_offset_min,
                                                   batch.now_s)
        found = (local_s // 86400, yyyymm_of_day(local_s // 86400)
                 if rng.zone_id or rng.utc_offset_min else batch.now_yyyymm)
        batch.ranges[range_id] = found
    yyyymm[0] = found[1]
    return found[0]
