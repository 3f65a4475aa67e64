# Included by layout.pxd (declarations only): the fleet configuration and usage records.

# Fleet configuration, in the config database:
#   'F' profile_id(4, big-endian) -> ProfileRecord
#   'C' contract_id(4)            -> ContractRecord
#   'O' outlet_code(4)            -> OutletRecord
#   'P' code(1)                   -> ProductRecord;  b"catalog" -> CatalogRecord
# Limits are indexed period * LIMIT_MEASURES + measure; periods: transaction, day, week
# (Monday first), month, lifetime, in the profile's local time; measures: money (minor
# units of the card's currency), volume (ml), count (transactions). 0: no limit.
cdef packed struct ProfileRecord:
    uint32_t profile_id
    uint8_t flags               # PROFILE_*
    uint8_t prompts             # PROMPT_* the terminal must collect
    uint8_t days_mask           # bit 0 Monday .. bit 6 Sunday; 0: every day
    uint8_t place_count
    int16_t utc_offset_min      # local time of the days, hours and periods
    uint16_t minute_from        # allowed minutes of the day [from, to); from == to: all day
    uint16_t minute_to
    uint16_t soft_mask          # bit i: limit i is soft (approve, flag for review)
    uint8_t allowed_products[PRODUCT_SET_SIZE]
    int64_t limits[15]          # LIMIT_PERIODS * LIMIT_MEASURES
    uint32_t places[PROFILE_PLACES_MAX]     # outlet or region codes
    uint32_t zone_id            # a time zone (DEFINE_ZONE) instead of utc_offset_min (0: none)

# A fleet card's usage, in the usage database keyed by card id (8, big-endian).
cdef packed struct UsageRecord:
    uint32_t period_index[COUNTED_PERIODS]  # which day/week/month the counters are of
    int64_t used[12]            # COUNTED_PERIODS * LIMIT_MEASURES
    int64_t pending[LIMIT_MEASURES]         # reserved by open holds
    int64_t odometer            # last reading accepted
    uint8_t odometer_set
    uint8_t reserved[7]

cdef packed struct ContractRecord:
    uint32_t contract_id
    uint32_t profile_id         # the cards' profile unless a card has its own
    char currency[CURRENCY_SIZE]
    uint32_t reserved
    int64_t credit_limit_minor  # its value may go down to -credit_limit_minor, holds included

cdef packed struct OutletRecord:
    uint32_t outlet_code
    uint32_t region_code        # 0: none
    char name[OUTLET_NAME_SIZE] # merchant/outlet, to tell codes apart
    uint32_t partner_id         # the loyalty partner (merchant) it belongs to (0: none)
    uint32_t reserved
    char display_name[OUTLET_DISPLAY_SIZE]  # for statements; may change

cdef packed struct CatalogRecord:
    uint8_t known[PRODUCT_SET_SIZE]
    uint8_t fuel[PRODUCT_SET_SIZE]
