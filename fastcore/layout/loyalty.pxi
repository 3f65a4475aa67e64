# Included by layout.pxd (declarations only): loyalty programs, earn rules, members and points history.

# A loyalty program, in the config database: 'G' program_id(4) -> ProgramRecord, and
# 'g' range_id(4) -> program_id(4, little-endian) for each range it covers.
cdef enum ExpiryKindCode:
    EXPIRY_NEVER = 0
    EXPIRY_DAYS_AFTER = 1       # expiry_n days after the earn, at the end of that day
    EXPIRY_MONTH_END_AFTER = 2  # the end of the month expiry_n months after the earn's
    EXPIRY_YEAR_END_AFTER = 3   # the end of the year of the month expiry_n months after

cdef packed struct ProgramRecord:
    uint32_t program_id
    uint8_t expiry_kind
    uint8_t range_count
    uint16_t expiry_n
    uint16_t pending_days       # points usable only this many days after they were earned
    int16_t utc_offset_min      # local time of the days, months and years above
    uint32_t range_ids[PROGRAM_RANGES_MAX]
    uint8_t flags               # PROGRAM_*
    uint8_t tier_count
    uint8_t discount_count
    uint8_t birthday_window_days    # the bonus counts within this many days of the birthday
    uint32_t point_value_millis     # one point's value in 1/1000 of a minor unit
    int64_t welcome_points      # the first purchase of a card
    int64_t birthday_points     # once a year, a purchase near the birthday
    int64_t tier_min[TIERS_MAX] # 12-month spend (minor) or points reaching each tier, ascending
    uint16_t tier_multiplier_permille[TIERS_MAX]
    char tier_names[TIERS_MAX][TIER_NAME_SIZE]
    int64_t discount_min[DISCOUNT_STEPS_MAX]    # lifetime spend from which each level applies
    uint16_t discount_bp[DISCOUNT_STEPS_MAX]    # its discount, in 1/100 % (ascending)
    uint32_t zone_id            # a time zone (DEFINE_ZONE) instead of utc_offset_min (0: none)

# An earn rule ('E' program_id(4) -> EarnRule[rule count] in the config database).
cdef enum RuleKindCode:
    RULE_PER_AMOUNT = 1         # `points` per `per` minor units spent
    RULE_PER_VOLUME = 2         # `points` per `per` ml of the sale's volume
    RULE_MULTIPLIER = 3         # the base points x points / 1000
    RULE_FIXED = 4              # `points` once per sale

cdef enum RuleScopeCode:
    SCOPE_ALL = 0
    SCOPE_OUTLETS = 1           # outlets[:place_count]
    SCOPE_PARTNER = 2           # every outlet of partner_id

cdef packed struct EarnRule:
    uint16_t rule_id            # the operator's number for it
    uint8_t kind
    uint8_t scope
    uint8_t place_count
    uint8_t days_mask           # bit 0 Monday .. bit 6 Sunday (program's local time); 0: all
    uint8_t methods_mask        # bit (PaymentMethod - 1); 0: any payment
    uint8_t reserved
    uint16_t minute_from        # [from, to) of the local day; equal: all day
    uint16_t minute_to
    uint32_t partner_id
    uint64_t from_s             # valid from (0: always)
    uint64_t until_s            # valid before (0: no end)
    int64_t points
    int64_t per
    uint8_t products[PRODUCT_SET_SIZE]  # the sale must include one of them (all 0: any sale)
    uint32_t outlets[RULE_PLACES_MAX]

# A loyalty member's standing, in the book: card_id(8, big-endian) 'M' -> this.
cdef packed struct MemberRecord:
    uint32_t month_index        # local months since 1970 of the newest month_* bucket
    uint8_t tier                # 0: base, 1..TIERS_MAX
    uint8_t flags               # MEMBER_*
    uint8_t birth_month         # 0: unknown
    uint8_t birth_day
    uint32_t birthday_year      # the year of the last birthday bonus
    uint32_t reserved
    uint64_t tier_review_s      # a lower tier may replace it from then on
    int64_t lifetime_spend_minor
    int64_t month_spend[SPEND_MONTHS]
    int64_t month_points[SPEND_MONTHS]

# What one rule gave a sale, kept for the statement.
cdef packed struct EarnPart:
    uint16_t rule_id
    uint8_t kind
    uint8_t reserved[5]
    int64_t points              # the rule's own terms
    int64_t per
    int64_t earned              # its contribution (multipliers: 0)

# A card's points history (in the book: card_id(8) 'H' journal seq(8) -> this):
# every points movement, and for earns how the points came about.
cdef packed struct PointsLine:
    uint8_t op
    uint8_t tier
    uint8_t earn_flags
    uint8_t part_count
    uint32_t outlet_code
    int64_t points              # + onto the card, - off it
    int64_t amount_minor        # the sale's amount
    int64_t volume_ml
    uint16_t tier_multiplier_permille
    uint16_t multiplier_permille    # of the rule multipliers together
    uint32_t reserved
    int64_t base_points
    int64_t fixed_points
    int64_t welcome_points
    int64_t birthday_points
    EarnPart parts[EARN_PARTS_MAX]
