# C-level layout of every record fastcore writes to LMDB or exchanges with the gateway;
# declarations only (no module of its own), cimported by records.pyx and ledger.pyx.
# All records are little-endian packed structs; keys that must sort (journal
# sequence, card id) are big-endian. Sizes are asserted at import (records.pyx).
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef enum:
    REQUEST_ID_SIZE = 16
    CARD_KEY_SIZE = 32          # HMAC-SHA256 of the PAN: cards are found by it
    RANGE_NAME_SIZE = 32
    ZONE_NAME_SIZE = 32         # an IANA time zone name, NUL-padded
    CURRENCY_SIZE = 4           # ISO 4217 alphabetic code, NUL padded
    PRODUCT_SET_SIZE = 32       # a set of product codes 0..255 as a bitmap
    PROFILE_PLACES_MAX = 16     # outlets or regions a restriction profile may allow
    LIMIT_PERIODS = 5           # transaction, day, week, month, lifetime
    LIMIT_MEASURES = 3          # money (minor units), volume (ml), count
    COUNTED_PERIODS = 4         # periods with usage counters: day, week, month, lifetime
    OUTLET_NAME_SIZE = 64
    OUTLET_DISPLAY_SIZE = 32    # what customers call an outlet ("Station 12")
    PROGRAM_RANGES_MAX = 8      # card ranges one loyalty program covers
    TIERS_MAX = 4               # tiers of a program above the base level
    TIER_NAME_SIZE = 16
    DISCOUNT_STEPS_MAX = 4      # discount levels by lifetime spend
    RULES_MAX = 64              # earn rules of one program
    RULE_PLACES_MAX = 16        # outlets one rule is scoped to
    EARN_PARTS_MAX = 6          # rules a statement line names
    SPEND_MONTHS = 12           # the rolling window tiers are assigned by
    MULTIPLIER_PERMILLE_MAX = 20000     # x20 (tier and rule multipliers)
    RULE_POINTS_MAX = 100000    # points of one per-amount or per-volume rule (no overflow)

cdef enum OpCode:
    OP_NONE = 0                 # a tombstone: a request reversed before it arrived
    OP_CREATE_RANGE = 1
    OP_ISSUE_CARD = 2
    OP_SET_STATUS = 3
    OP_LOAD = 4
    OP_PURCHASE = 5
    OP_REFUND = 6
    OP_REVERSAL = 7
    OP_SET_PIN = 8
    OP_PREAUTH = 9              # place a hold of up to amount_minor
    OP_COMPLETE = 10            # settle hold ref_request_id for amount_minor, release the rest
    OP_VOID = 11                # release hold ref_request_id
    OP_HOLD_EXPIRY = 12         # journal only: a hold released by its timeout
    OP_ADJUST = 13              # operator correction of a card's value, up or down, with a reason
    OP_CLEAR = 14               # operator clears a card's whole value, recording the amount
    OP_DEACTIVATE = 15          # close a card for good; its value zero, paid out or moved (CloseDisposition)
    OP_SELL_PACKAGE = 16        # subscription: amount_minor units, usable until valid_until_s
    OP_USE_UNITS = 17           # subscription: consume amount_minor units, earliest-expiring first
    OP_PACKAGE_EXPIRY = 18      # journal only: a package's unused units expired
    OP_DEFINE_PRODUCT = 19      # catalog: product range_id(code) is fuel (target_status 1) or not (2)
    OP_SET_PROFILE = 20         # restriction profile profile_id := the ProfileRecord payload
    OP_DEFINE_OUTLET = 21       # outlet outlet_code lies in region range_id (OutletRecord payload)
    OP_SET_CONTRACT = 22        # contract account contract_id: currency, credit limit, profile
    OP_ASSIGN_CARD = 23         # card's own profile_id and contract_id (0: none)
    OP_EARN_POINTS = 24         # loyalty: a lot of amount_minor points, usable until valid_until_s (0: ever)
    OP_REDEEM_POINTS = 25       # loyalty: spend amount_minor points, earliest-expiring lots first
    OP_POINTS_EXPIRY = 26       # journal only: a lot's unused points expired
    OP_SET_PROGRAM = 27         # loyalty program := the ProgramRecord payload (expiry, pending, ranges)
    OP_ADJUST_POINTS = 28       # operator: amount_minor points on (a new lot) or off (FIFO), with a reason
    OP_TRANSFER_POINTS = 29     # points from card_key to the card whose key is the 32-byte payload
    OP_SET_RULES = 30           # program profile_id's earn rules := the EarnRule[] payload
    OP_LOYALTY_SALE = 31        # a sale paid otherwise (target_status: PaymentMethod): earn, discount
    OP_SET_MEMBER = 32          # card holder's birthday: profile_id = month * 100 + day (0: unknown)
    OP_RESERVE_POINTS = 33      # hold amount_minor points for a redemption (earliest-expiring first)
    OP_CONFIRM_POINTS = 34      # redeem amount_minor of reservation ref_request_id, release the rest
    OP_RELEASE_POINTS = 35      # give reservation ref_request_id's points back
    OP_POINTS_HOLD_EXPIRY = 36  # journal only: a reservation released by its timeout
    OP_DEFINE_PARTNER = 37      # loyalty partner profile_id is named range_name (a merchant)
    OP_ALLOCATE_SERIALS = 38    # amount_minor card serial numbers of range range_id, in order
    OP_SET_STAGE = 39           # the card's production stage := target_status (CardStage), forward only
    OP_REPLACE_CARD = 40        # lost or stolen: all of card_key moves to the card whose key is the payload
    OP_DEFINE_ZONE = 41         # zone_id's name and UTC offsets over time (payload: ZONE_NAME_SIZE + ZoneEntry[])
    OP_COUNT = 42               # one past the last operation (the ledger's table size)

# Same numbers as cardgate.v1.ResultCode, so the gateway maps them one to one.
cdef enum ResultCode:
    RESULT_APPROVED = 1
    RESULT_PARTIALLY_APPROVED = 2
    RESULT_DECLINED_UNKNOWN_CARD = 10
    RESULT_DECLINED_CARD_NOT_ACTIVE = 11
    RESULT_DECLINED_CARD_BLOCKED = 12
    RESULT_DECLINED_CARD_EXPIRED = 13
    RESULT_DECLINED_CARD_CLOSED = 14
    RESULT_DECLINED_WRONG_PIN = 15
    RESULT_DECLINED_PIN_REQUIRED = 16         # the card has a PIN and its policy requires it
    RESULT_DECLINED_INSUFFICIENT_FUNDS = 20
    RESULT_DECLINED_CURRENCY_MISMATCH = 21
    RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED = 22
    RESULT_DECLINED_LOAD_LIMIT_EXCEEDED = 23
    RESULT_DECLINED_BALANCE_NOT_ZERO = 24
    RESULT_DECLINED_NO_UNITS_LEFT = 25
    RESULT_DECLINED_POINTS_LIMIT_EXCEEDED = 26    # the card's points would pass BALANCE_MINOR_MAX
    RESULT_DECLINED_UNITS_LIMIT_EXCEEDED = 27     # the card's units would pass BALANCE_MINOR_MAX
    RESULT_DECLINED_SYSTEM_LIMIT_EXCEEDED = 28    # a range account or lifetime total at int64's end
    RESULT_DECLINED_ORIGINAL_NOT_FOUND = 30
    RESULT_DECLINED_ORIGINAL_NOT_REFUNDABLE = 31
    RESULT_DECLINED_REFUND_EXCEEDS_ORIGINAL = 32
    RESULT_DECLINED_CARD_MISMATCH = 33
    RESULT_DECLINED_NOT_REVERSIBLE = 34
    RESULT_DECLINED_ALREADY_REVERSED = 35
    RESULT_DECLINED_NOT_OWN_REQUEST = 36      # the earlier request is another merchant's
    RESULT_DECLINED_CARD_ALREADY_ISSUED = 40
    RESULT_DECLINED_UNKNOWN_CARD_RANGE = 41
    RESULT_DECLINED_CARD_RANGE_EXISTS = 42
    RESULT_DECLINED_INVALID_STATUS_CHANGE = 43
    RESULT_DECLINED_RANGE_EXHAUSTED = 44      # the range has no card numbers left
    RESULT_DECLINED_REPLACEMENT_UNUSABLE = 45 # a replacement must be a new, unused card of the range
    RESULT_DECLINED_HOLDS_OPEN = 46           # open pre-authorizations or held points: settle first
    RESULT_DECLINED_HOLD_NOT_FOUND = 50
    RESULT_DECLINED_HOLD_ALREADY_COMPLETED = 51
    RESULT_DECLINED_HOLD_VOIDED = 52
    RESULT_DECLINED_HOLD_EXPIRED = 53
    RESULT_DECLINED_COMPLETION_EXCEEDS_HOLD = 54
    RESULT_DECLINED_PRODUCT_NOT_ALLOWED = 60
    RESULT_DECLINED_OUTLET_NOT_ALLOWED = 61
    RESULT_DECLINED_TIME_NOT_ALLOWED = 62
    RESULT_DECLINED_PROMPT_REQUIRED = 63      # CoreReply.prompts_missing says which
    RESULT_DECLINED_ODOMETER_BACKWARDS = 64
    RESULT_DECLINED_LIMIT_EXCEEDED = 65       # CoreReply.limit_hit says which
    RESULT_DECLINED_CREDIT_LIMIT_EXCEEDED = 66
    RESULT_DECLINED_UNKNOWN_PROFILE = 67
    RESULT_DECLINED_UNKNOWN_CONTRACT = 68
    RESULT_DECLINED_CONTRACT_CARD = 69        # acts on a card's own value; it draws on a contract
    RESULT_DECLINED_OUTLET_CODE_TAKEN = 70
    RESULT_DECLINED_INSUFFICIENT_POINTS = 80
    RESULT_DECLINED_POINTS_PENDING = 81       # enough points, but some still in their returns window
    RESULT_DECLINED_RANGE_IN_ANOTHER_PROGRAM = 82
    RESULT_DECLINED_RECEIVING_CARD_UNUSABLE = 83   # a transfer's receiving card: unknown, blocked, closed, expired
    RESULT_DECLINED_POINTS_OWED = 84          # a return took back points already spent: none to redeem
    RESULT_DECLINED_UNKNOWN_PROGRAM = 85
    RESULT_DECLINED_NOT_IN_PROGRAM = 86       # the card's range is in no loyalty program
    RESULT_DECLINED_UNKNOWN_OUTLET = 87       # a rule names an outlet that is not defined
    RESULT_DECLINED_POINTS_HAVE_NO_VALUE = 88 # paying with points, in a program that gives them none
    RESULT_DECLINED_UNKNOWN_PARTNER = 89      # an outlet or rule names a partner not defined
    RESULT_DECLINED_UNKNOWN_ZONE = 90         # configuration names a time zone not defined
    RESULT_DECLINED_OFFLINE_FLOOR_EXCEEDED = 91   # an offline sale above the range's offline
                                              # floor: recorded and flagged, not posted
    RESULT_DECLINED_OFFLINE_TOO_OLD = 92      # an offline sale advised past the range's age
                                              # limit (or dated ahead): recorded and flagged
    # Not business outcomes: the gateway turns these into gRPC status codes.
    RESULT_REJECTED_REQUEST_ID_REUSED = 250
    RESULT_REJECTED_INVALID_REQUEST = 251
    RESULT_REJECTED_UNKNOWN_PRODUCT = 252     # a product code not in the catalog

# A points reservation is a hold of points and answers with the wire's hold codes; these
# names say what each means for a reservation.
cdef enum ReservationResult:
    RESULT_DECLINED_RESERVATION_NOT_FOUND = RESULT_DECLINED_HOLD_NOT_FOUND
    RESULT_DECLINED_RESERVATION_CONFIRMED = RESULT_DECLINED_HOLD_ALREADY_COMPLETED
    RESULT_DECLINED_RESERVATION_RELEASED = RESULT_DECLINED_HOLD_VOIDED
    RESULT_DECLINED_RESERVATION_TIMED_OUT = RESULT_DECLINED_HOLD_EXPIRED
    RESULT_DECLINED_CONFIRMATION_EXCEEDS_RESERVATION = RESULT_DECLINED_COMPLETION_EXCEEDS_HOLD

# Same numbers as cardgate.v1.CardStatus.
cdef enum CardStatusCode:
    CARD_ISSUED = 1
    CARD_ACTIVE = 2
    CARD_BLOCKED = 3
    CARD_CLOSED = 4

# What happens to a card's value when it is closed (OP_DEACTIVATE's target_status).
cdef enum CloseDisposition:
    CLOSE_AT_ZERO = 0           # the value must be zero already
    CLOSE_PAYOUT = 1            # the value is paid out to the holder (back to the range's funding)
    CLOSE_MOVE = 2              # the value moves to the card whose key is the payload

# A card's production, before it is used (activation is its status ACTIVE).
cdef enum CardStageCode:
    STAGE_CREATED = 0
    STAGE_PERSONALIZED = 1      # chip and stripe encoded, checked
    STAGE_SHIPPED = 2

cdef enum AccountSlot:
    SLOT_CARD_VALUE = 0         # a card's stored value, in the range's currency
    SLOT_RANGE_FUNDING = 1      # money received for loads (cash, bank)
    SLOT_RANGE_MERCHANT = 2     # owed to the merchant for purchases
    SLOT_CARD_HELD = 3          # a card's value held for open pre-authorizations
    SLOT_CARD_UNITS = 4         # a card's subscription units (asset UNITS_ASSET)
    SLOT_RANGE_UNITS_SOLD = 5
    SLOT_RANGE_UNITS_USED = 6
    SLOT_RANGE_UNITS_EXPIRED = 7
    SLOT_CARD_POINTS = 8        # a card's loyalty points (asset POINTS_ASSET)
    SLOT_RANGE_POINTS_ISSUED = 9
    SLOT_RANGE_POINTS_REDEEMED = 10
    SLOT_RANGE_POINTS_EXPIRED = 11
    SLOT_RANGE_POINTS_ADJUSTED = 12
    SLOT_CARD_POINTS_OWED = 13  # points a return took back after they were spent (<= 0)
    # Statistical, not value: what members bought paying otherwise (loyalty sales), so
    # that every sale is in the journal for analytics. Credit the card, debit the range.
    SLOT_CARD_SALES_ELSEWHERE = 14
    SLOT_RANGE_SALES_ELSEWHERE = 15
    SLOT_CARD_POINTS_HELD = 16  # a card's points reserved for redemptions not yet confirmed

cdef enum LotStatus:
    LOT_OPEN = 1
    LOT_USED_UP = 2
    LOT_EXPIRED = 3
    LOT_HELD = 4            # points reserved for a redemption, until held_until_s

cdef enum HoldStatus:
    HOLD_OPEN = 1
    HOLD_COMPLETED = 2
    HOLD_VOIDED = 3
    HOLD_EXPIRED = 4

cdef enum ReviewFlag:
    REVIEW_SOFT_LIMIT = 1           # approved past a soft limit (CoreReply.limit_hit)
    REVIEW_FORCED_CAPTURE = 2       # a completion taken after its hold expired
    REVIEW_OFFLINE_POSTED = 4       # a sale approved offline, posted whatever the card held
    REVIEW_OFFLINE_REFUSED = 8      # a sale approved offline past the range's offline floor
                                    # or age limit, or of a card closed since: recorded, not posted

cdef enum:
    ACCOUNT_NO_OVERDRAFT = 1
    REASON_FORCED_CAPTURE = 255     # JournalEntry.reason: a completion after its hold expired
    REASON_OFFLINE_SALE = 254       # JournalEntry.reason: a sale approved offline (forced post)
    OFFLINE_AGE_DEFAULT_S = 259200  # a range's offline age limit when it names none (3 days)
    OFFLINE_AHEAD_MAX_S = 3600      # an offline sale dated later than the host's clock by more
                                    # is not posted (a terminal's clock that is wrong)

cdef enum RecordFlag:           # RequestRecord.flags: what happened to a request later
    RECORD_REVERSED = 1
    RECORD_TOMBSTONE = 2        # reversed before it arrived
    RECORD_CONFIRMED = 4        # a points reservation: confirmed
    RECORD_RELEASED = 8         # released by request
    RECORD_TIMED_OUT = 16       # released by its timeout

cdef enum RequestFlag:          # CoreRequest.flags: what the request carries
    REQUEST_PIN_PRESENT = 1     # CoreRequest.flags: pin_verifier carries the entered PIN
    REQUEST_PARTIAL_OK = 2      # CoreRequest.flags: the terminal accepts a partial approval
    REQUEST_ADJUST_DOWN = 4     # CoreRequest.flags: an adjustment takes value off the card
    REQUEST_ODOMETER_PRESENT = 8    # CoreRequest.flags: the odometer field carries a reading
    REQUEST_DRIVER_PRESENT = 16     # CoreRequest.flags: the terminal collected a driver id
    REQUEST_VEHICLE_PRESENT = 32    # CoreRequest.flags: the terminal collected a vehicle id
    REQUEST_PARTNER_SHARES = 64     # DEFINE_PARTNER: its outlets act on each other's requests
    REQUEST_OFFLINE = 128           # PURCHASE: a sale the terminal approved offline, advised
                                    # now (store and forward): a forced post

cdef enum:                      # PinPolicy of RangeRecord.pin_policy (cardgate.v1.PinPolicy's numbers)
    PIN_POLICY_REQUIRED = 1     # (and 0) a card with a PIN set is declined without it
    PIN_POLICY_OPTIONAL = 2     # a PIN entered is checked; none is accepted too
    PIN_POLICY_NOT_USED = 3     # the card's PIN is neither asked nor checked

cdef enum:
    PIN_VERIFIER_SIZE = 16      # truncated HMAC-SHA256 of (card key, PIN) under the PIN key
    PROMPT_PIN = 1              # ProfileRecord.prompts, CoreReply.prompts_missing
    PROMPT_ODOMETER = 2
    PROMPT_DRIVER = 4
    PROMPT_VEHICLE = 8
    PROFILE_NONFUEL_ALLOWED = 1     # ProfileRecord.flags
    PROFILE_FUELS_RESTRICTED = 2    # only allowed_products among fuels
    PROFILE_PIN_OPTIONAL = 4        # the profile's PinPolicy (neither flag: the range's;
    PROFILE_PIN_NOT_USED = 8        #   PROMPT_PIN among prompts: required)
    PRODUCT_FUEL = 1            # DEFINE_PRODUCT target_status
    PRODUCT_OTHER = 2
    PROGRAM_STACK_RULES = 1     # ProgramRecord.flags: matching rules add up (else the best wins)
    PROGRAM_TIERS_BY_POINTS = 2 # tiers by points earned in 12 months (else by spend)
    PROGRAM_NO_EARN_WHEN_REDEEMING = 4  # a sale partly paid with points earns nothing
    PROGRAM_SPEND_AFTER_DISCOUNT = 8    # lifetime spend counts what was paid (else the price)
    MEMBER_WELCOMED = 1         # MemberRecord.flags: the welcome bonus was given
    EARNED_WELCOME = 1          # EarnResult.flags / CoreReply.earn_flags
    EARNED_BIRTHDAY = 2
    EARNED_TIER_UP = 4          # this sale lifted the card to a higher tier
    PAYMENT_CARD_VALUE = 1      # payment methods (cardgate.v1.PaymentMethod): this card's value
    PAYMENT_CASH = 2
    PAYMENT_BANK_CARD = 3
    PAYMENT_OTHER = 4

# One request from the gateway to the core: declared in core_request.h, where the bytes
# that different operations use differently carry one name per use (anonymous unions).
cdef extern from "core_request.h":
    ctypedef struct CoreRequest:
        uint8_t op
        uint8_t target_status       # SET_STATUS
        uint8_t numbering           # CREATE_RANGE
        uint8_t close_disposition   # DEACTIVATE
        uint8_t product_kind        # DEFINE_PRODUCT
        uint8_t stage               # SET_STAGE
        uint8_t payment_method      # LOYALTY_SALE
        uint8_t pan_length
        uint8_t iin_digits
        char currency[CURRENCY_SIZE]
        int64_t amount_minor
        int64_t balance_max_minor   # CREATE_RANGE
        int64_t serial_count        # ALLOCATE_SERIALS
        int64_t credit_limit_minor  # SET_CONTRACT
        uint8_t request_id[REQUEST_ID_SIZE]
        uint8_t ref_request_id[REQUEST_ID_SIZE]
        uint8_t card_payload_digest[REQUEST_ID_SIZE]    # TRANSFER_POINTS, REPLACE_CARD, DEACTIVATE
        uint8_t card_key[CARD_KEY_SIZE]
        uint8_t payload_digest[CARD_KEY_SIZE]           # configuration payloads
        uint32_t range_id
        uint32_t product_code       # DEFINE_PRODUCT
        uint32_t expiry_yyyymm
        uint32_t pan_first6
        uint16_t pan_last4
        uint16_t flags              # RequestFlag
        uint64_t iin_prefix
        char range_name[RANGE_NAME_SIZE]
        char product_name[RANGE_NAME_SIZE]  # DEFINE_PRODUCT
        char partner_name[RANGE_NAME_SIZE]  # DEFINE_PARTNER
        char offline_approval_code[RANGE_NAME_SIZE]    # PURCHASE with REQUEST_OFFLINE
        uint8_t pin_verifier[PIN_VERIFIER_SIZE]
        uint8_t pin_tries_max
        uint8_t reason
        uint8_t pin_policy          # CREATE_RANGE
        uint16_t payload_size
        uint32_t profile_id
        uint32_t program_id         # SET_RULES
        uint32_t partner_id         # DEFINE_PARTNER
        uint32_t birthday_mmdd      # SET_MEMBER
        uint32_t zone_id            # CREATE_RANGE, DEFINE_ZONE
        int64_t load_per_day_max_minor
        int64_t points_tendered     # LOYALTY_SALE
        uint64_t valid_until_s
        uint64_t late_grace_s
        uint64_t offline_local_s    # PURCHASE with REQUEST_OFFLINE
        int64_t volume_ml
        int64_t offline_floor_minor # CREATE_RANGE
        int64_t odometer
        int64_t offline_age_s       # CREATE_RANGE
        uint32_t outlet_code
        uint32_t contract_id
        uint8_t products[PRODUCT_SET_SIZE]
        uint32_t actor
        int32_t utc_offset_min      # CREATE_RANGE
        uint32_t merchant_code
        uint8_t details_digest[REQUEST_ID_SIZE]     # a terminal's card operation's details

# The core's answer to one request, stored with it so that retries get it unchanged.
cdef packed struct CoreReply:
    uint8_t result
    uint8_t op
    uint8_t card_status
    uint8_t pan_length
    char currency[CURRENCY_SIZE]
    int64_t approved_minor
    int64_t balance_minor
    int64_t pending_minor
    uint64_t card_id
    uint64_t journal_seq
    uint32_t approval_code
    uint32_t pan_first6
    uint16_t pan_last4
    uint8_t prompts_missing     # PROMPT_* the terminal must collect
    uint8_t limit_hit           # 1 + index (period * LIMIT_MEASURES + measure) of a limit hit
    uint32_t expiry_yyyymm
    int64_t volume_ml           # PREAUTH: the most the pump may dispense (0: no volume limit)
    int64_t credit_limit_minor  # a contract card: its contract's credit limit
    uint8_t review              # ReviewFlag bits: why an approval is listed for the operator
    uint8_t tier                # loyalty: the card's tier after this request (0: base)
    uint8_t earn_flags          # EARNED_*
    uint8_t reserved
    uint16_t discount_bp        # loyalty sale: discount the POS applies, in 1/100 %
    uint16_t reserved2
    int64_t points_earned       # loyalty: points this sale earned (a refund: taken back)
    int64_t discount_minor
    int64_t lifetime_spend_minor    # loyalty: the card's lifetime spend before this sale
    uint64_t points_seq         # loyalty: the journal seq of the points' history line (0: none)
    int64_t points_redeemed     # loyalty sale: points that paid part of it
    int64_t points_value_minor  # and what they paid
    int64_t points_balance      # loyalty: the card's points after this request (with owed)

# Value of the idempotency table, keyed by request id.
cdef packed struct RequestRecord:
    CoreRequest request
    CoreReply reply
    int64_t refunded_minor      # purchases: sum of approved refunds still standing
    uint32_t flags              # RecordFlag
    uint32_t reserved

cdef packed struct CardRecord:
    uint64_t card_id
    uint32_t range_id
    uint32_t expiry_yyyymm
    uint8_t status
    uint8_t pan_length
    uint16_t pan_last4
    uint32_t pan_first6
    uint64_t issued_s
    uint64_t activated_s
    uint8_t pin_set
    uint8_t pin_failures        # wrong PINs in a row; reset by a right one, a new PIN, unblock
    uint8_t stage               # CardStage: how far production went (its times: book 'T' keys)
    uint8_t reserved
    uint32_t contract_id        # 0, or the contract account the card draws on
    uint8_t pin_verifier[PIN_VERIFIER_SIZE]
    uint32_t load_day           # days since 1970 of loaded_today_minor
    uint32_t profile_id         # 0, or the card's own restriction profile
    int64_t loaded_today_minor
    uint32_t issuer_partner     # the coalition partner whose outlet first loaded it (0: none):
                                # its value is that partner's to settle (TransactionRecord)

cdef packed struct AccountRecord:
    int64_t balance_minor
    int64_t pending_minor
    char currency[CURRENCY_SIZE]
    uint32_t flags
    int64_t credits_minor_total
    int64_t debits_minor_total
    uint64_t last_journal_seq

cdef packed struct JournalEntry:
    uint8_t request_id[REQUEST_ID_SIZE]
    uint64_t debit_owner
    uint64_t credit_owner
    uint8_t debit_slot
    uint8_t credit_slot
    uint8_t op
    uint8_t reason              # ADJUST, CLEAR: why
    char currency[CURRENCY_SIZE]
    int64_t amount_minor
    uint64_t time_s
    uint32_t actor              # the request's actor (0 for entries time posts)
    uint32_t partner_id         # loyalty: the partner where it happened (0: none)
    uint32_t origin_partner     # points used: the partner that issued them
    uint32_t reserved

# A pre-authorization's hold, keyed by the pre-authorization's request id; an index
# keyed expires_s(8, big-endian) + hold id lets the writer release holds in time order.
cdef packed struct HoldRecord:
    uint64_t card_id
    uint32_t range_id
    uint8_t status
    uint8_t counted             # reserved against the card's fleet usage (UsageRecord.pending)
    uint8_t forced              # completed after it expired: a forced capture
    uint8_t reserved
    char currency[CURRENCY_SIZE]
    int64_t held_minor
    int64_t completed_minor
    uint64_t created_s
    uint64_t expires_s
    uint64_t value_owner        # whose value is held: the card, or its contract
    int64_t volume_ml           # most the pump may dispense (0: no volume limit)
    int64_t completed_volume_ml
    uint32_t merchant_code      # the pre-authorization's merchant (CoreRequest.merchant_code)
    uint32_t outlet_code        # and its outlet

# One line of the transactions database (what an office lists, exports and invoices),
# written for every request of a card operation (TRANSACTION_OPS) that the core
# answered, approved or declined; kept for ever, like the journal. Keyed time(8,
# big-endian) + request id. The gateway's TransactionDetails (acceptor names, fleet
# prompts, product lines), when the request carried them, follow the record verbatim.
cdef packed struct TransactionRecord:
    uint8_t op
    uint8_t result
    uint8_t review              # ReviewFlag bits
    uint8_t flags               # TX_* below
    char currency[CURRENCY_SIZE]
    uint64_t card_id            # 0: no card found
    uint32_t range_id           # the card's, at the time
    uint32_t contract_id        # the card's contract at the time (0: none)
    uint32_t merchant_code      # where it was made (CoreRequest.merchant_code, outlet_code)
    uint32_t outlet_code
    uint32_t partner_id         # the coalition partner of the outlet (0: none)
    uint32_t issuer_partner     # the card's issuing partner (CardRecord.issuer_partner)
    uint32_t actor              # an operator's or bureau's request: who
    uint32_t approval_code
    uint32_t pan_first6
    uint16_t pan_last4
    uint8_t pan_length
    uint8_t reason
    int64_t amount_minor        # asked for
    int64_t approved_minor      # took effect (0 when declined)
    int64_t balance_minor       # the card's balance after it
    int64_t volume_ml
    int64_t odometer
    int64_t points_earned
    int64_t points_redeemed
    int64_t discount_minor
    uint64_t journal_seq
    uint8_t request_id[REQUEST_ID_SIZE]
    uint8_t ref_request_id[REQUEST_ID_SIZE]
    uint8_t ref_op              # a reversal: the operation of the request it names
    uint8_t reserved[3]

cdef enum TransactionFlag:
    TX_OFFLINE = 1              # a sale the terminal approved offline (store and forward)
    TX_ODOMETER = 2             # odometer carries a reading
    TX_PARTIAL = 4              # approved for less than asked

include "layout/fleet.pxi"

# A time zone, in the config database: 'Z' zone_id(4) -> its name (ZONE_NAME_SIZE bytes,
# NUL-padded) and ZoneEntry[], ascending: the UTC offset in force from from_s on.
cdef packed struct ZoneEntry:
    int64_t from_s
    int32_t offset_s
    int32_t reserved

# A lot of value usable until a time: a subscription package (units) or a lot of loyalty
# points, keyed by the request that created it. Indexes, one set per kind:
#   ..._expiry: valid_until_s(8, big-endian) + lot id          (writer expiry)
#   card_...:   card_id(8) + valid_until_s(8) + lot id         (use, earliest-expiring first)
#               (for points, in the book: card_id(8) 'L' valid_until_s(8) lot id)
# A lot that never expires (valid_until_s 0) is indexed at LOT_NEVER.
cdef packed struct LotRecord:
    uint64_t card_id
    uint32_t range_id
    uint8_t status
    uint8_t reserved[3]
    int64_t quantity_total      # units of a package, or points of a lot, when created
    int64_t quantity_left       # what is left to use
    uint64_t created_s
    uint64_t valid_until_s      # last second usable (0: never)
    uint64_t available_from_s   # points: usable from (after the program's returns window)
    uint32_t partner_id         # points: the partner that issued them
    uint32_t reserved2
    uint64_t held_until_s       # LOT_HELD: released at this time unless confirmed

include "layout/loyalty.pxi"

cdef packed struct RangeRecord:
    uint32_t range_id
    uint8_t pan_length
    uint8_t iin_digits
    uint8_t pin_tries_max
    uint8_t numbering               # how IssueCards numbers its cards: 0 or 1 in order, 2 at random
    uint64_t iin_prefix
    char currency[CURRENCY_SIZE]
    char name[RANGE_NAME_SIZE]
    int64_t balance_max_minor       # 0: only BALANCE_MINOR_MAX
    int64_t load_per_day_max_minor  # 0: no daily load limit (a day: the range's local day)
    uint64_t late_grace_s           # a completion this long after its hold expired is taken
                                    # as a forced capture (0: never)
    uint32_t zone_id                # local time of card expiry and daily loads (0: the offset)
    int16_t utc_offset_min
    uint8_t pin_policy              # PinPolicy: whether a card's PIN must be entered
    int64_t offline_floor_minor     # most a terminal may approve offline (0: none is posted)
    int64_t offline_age_s           # how old an offline sale may be when advised

# Keys. The book keeps a card and everything of its own next to each other:
#   card_id(8, big-endian) 'C'          -> CardRecord
#   owner_id(8, big-endian) 'A' slot(1) -> AccountRecord
#   card_id 'M'                         -> MemberRecord (loyalty standing)
#   card_id 'H' journal seq(8)          -> PointsLine (points history)
#   card_id 'L' valid_until_s(8) lot id -> b"" (its point lots, earliest-expiring first)
#   card_id 'T' stage(1)                -> when it reached that stage (8, big-endian)
# Range-level accounts use owner ids at SYSTEM_OWNER_BASE + range_id.
cdef inline bytes card_key_of(uint64_t card_id):
    cdef unsigned char k[9]
    cdef int i
    for i in range(8):
        k[i] = (card_id >> (56 - 8 * i)) & 0xFF
    k[8] = b'C'
    return (<char*>k)[:9]

cdef inline bytes account_key_of(uint64_t owner_id, uint8_t slot):
    cdef unsigned char k[10]
    cdef int i
    for i in range(8):
        k[i] = (owner_id >> (56 - 8 * i)) & 0xFF
    k[8] = b'A'
    k[9] = slot
    return (<char*>k)[:10]

cdef inline bytes u64_be(uint64_t value):
    cdef unsigned char k[8]
    cdef int i
    for i in range(8):
        k[i] = (value >> (56 - 8 * i)) & 0xFF
    return (<char*>k)[:8]

cdef inline bytes member_key_of(uint64_t card_id):
    return u64_be(card_id) + b'M'

cdef inline bytes history_key_of(uint64_t card_id, uint64_t seq):
    return u64_be(card_id) + b'H' + u64_be(seq)

cdef inline bytes stage_time_key_of(uint64_t card_id, uint8_t stage):
    return u64_be(card_id) + b'T' + bytes([stage])

cdef inline uint64_t u64_from_be(const unsigned char* k):
    cdef uint64_t value = 0
    cdef int i
    for i in range(8):
        value = (value << 8) | k[i]
    return value

cdef inline bytes config_key_of(char kind, uint32_t id_):
    cdef unsigned char k[5]
    k[0] = kind
    k[1] = (id_ >> 24) & 0xFF
    k[2] = (id_ >> 16) & 0xFF
    k[3] = (id_ >> 8) & 0xFF
    k[4] = id_ & 0xFF
    return (<char*>k)[:5]

cdef inline bytes range_key_of(uint32_t range_id):
    return config_key_of(b'R', range_id)
