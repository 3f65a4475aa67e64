# Civil calendar arithmetic on local times (seconds since 1970 plus a UTC offset),
# shared by the ledger (expiry, fleet periods and hours) and the earn rules.
# Declarations only, inlined where cimported.
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t


cdef inline uint32_t yyyymm_of_day(int64_t day):
    """Civil month of a day count since 1970-01-01 (H. Hinnant's civil_from_days)."""
    cdef int64_t z = day + 719468
    cdef int64_t era = (z if z >= 0 else z - 146096) // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t y = yoe + era * 400
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int64_t m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return <uint32_t>(y * 100 + m)


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d):
    """Days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil)."""
    y -= m <= 2
    cdef int64_t era = (y if y >= 0 else y - 399) // 400
    cdef int64_t yoe = y - era * 400
    cdef int64_t doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline uint32_t month_index_of_day(int64_t day):
    """Months since January 1970 of a day count."""
    cdef uint32_t yyyymm = yyyymm_of_day(day)
    return (yyyymm // 100 - 1970) * 12 + yyyymm % 100 - 1


cdef inline bint in_schedule(uint8_t days_mask, uint16_t minute_from, uint16_t minute_to,
                             int64_t local_s):
    """A local time on one of the days (bit 0 Monday .. bit 6 Sunday; 0: every day) and
    in the minutes [from, to) of the day (equal: all day; from > to: over midnight)."""
    cdef int64_t day = local_s // 86400
    cdef int64_t minute = (local_s % 86400) // 60
    if days_mask and not (days_mask >> ((day + 3) % 7)) & 1:
        return False
    if minute_from == minute_to:
        return True
    if minute_from < minute_to:
        return minute_from <= minute < minute_to
    return not minute_to <= minute < minute_from
