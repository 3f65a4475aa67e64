/* One request from the gateway to the core (fixed size; a batch is their concatenation,
 * each followed by its payload, if any). Declared in C because several operations need
 * different things in the same bytes: an anonymous union gives each its own name, so
 * code says what it reads (rq->product_code, rq->birthday_mmdd) and the record keeps one
 * size. layout.pxd declares the same names to Cython; which operation uses which name is
 * in layout.pxd's OpCode comments. Little-endian, packed. */
#ifndef CARDGATE_CORE_REQUEST_H
#define CARDGATE_CORE_REQUEST_H
#include <stdint.h>

#pragma pack(push, 1)
typedef struct {
    uint8_t op;
    union {                                 /* one code whose meaning is the operation's */
        uint8_t target_status;              /* SET_STATUS: the card's new CardStatus */
        uint8_t numbering;                  /* CREATE_RANGE: how its cards are numbered */
        uint8_t close_disposition;          /* DEACTIVATE: CloseDisposition */
        uint8_t product_kind;               /* DEFINE_PRODUCT: PRODUCT_FUEL or PRODUCT_OTHER */
        uint8_t stage;                      /* SET_STAGE: CardStage reached */
        uint8_t payment_method;             /* LOYALTY_SALE: PAYMENT_* */
    };
    uint8_t pan_length;
    uint8_t iin_digits;
    char currency[4];                       /* ISO 4217 code or asset (PTS, UNT), NUL padded */
    union {
        int64_t amount_minor;               /* value moved, in the asset's smallest unit
                                               (minor units, points, subscription units) */
        int64_t balance_max_minor;          /* CREATE_RANGE: most a card may hold (0: system's) */
        int64_t serial_count;               /* ALLOCATE_SERIALS: serial numbers to take */
        int64_t credit_limit_minor;         /* SET_CONTRACT */
    };
    uint8_t request_id[16];
    union {
        uint8_t ref_request_id[16];         /* the earlier request this one acts on */
        uint8_t card_payload_digest[16];    /* TRANSFER_POINTS, REPLACE_CARD, DEACTIVATE:
                                               SHA-256 prefix of the other card's key */
    };
    union {
        uint8_t card_key[32];               /* HMAC of the card's PAN */
        uint8_t payload_digest[32];         /* configuration: SHA-256 of the payload */
    };
    union {
        uint32_t range_id;                  /* card range */
        uint32_t product_code;              /* DEFINE_PRODUCT */
    };
    uint32_t expiry_yyyymm;
    uint32_t pan_first6;
    uint16_t pan_last4;
    uint16_t flags;                         /* REQUEST_* flags (layout.pxd RequestFlag) */
    uint64_t iin_prefix;
    union {
        char range_name[32];                /* CREATE_RANGE */
        char product_name[32];              /* DEFINE_PRODUCT */
        char partner_name[32];              /* DEFINE_PARTNER */
        char offline_approval_code[32];     /* PURCHASE with REQUEST_OFFLINE: the approval
                                               code the terminal gave (ASCII, NUL padded) */
    };
    uint8_t pin_verifier[16];
    uint8_t pin_tries_max;                  /* CREATE_RANGE: wrong PINs in a row that block */
    union {
        uint8_t reason;                     /* ADJUST, CLEAR: AdjustmentReason */
        uint8_t pin_policy;                 /* CREATE_RANGE: PinPolicy of its cards */
    };
    uint16_t payload_size;                  /* bytes of payload after this request */
    union {
        uint32_t profile_id;                /* SET_PROFILE, SET_CONTRACT, ASSIGN_CARD */
        uint32_t program_id;                /* SET_RULES */
        uint32_t partner_id;                /* DEFINE_PARTNER */
        uint32_t birthday_mmdd;             /* SET_MEMBER: month * 100 + day (0: unknown) */
        uint32_t zone_id;                   /* CREATE_RANGE, DEFINE_ZONE: a time zone (0: none) */
    };
    union {
        int64_t load_per_day_max_minor;     /* CREATE_RANGE */
        int64_t points_tendered;            /* LOYALTY_SALE: points the member pays with */
    };
    union {
        uint64_t valid_until_s;             /* SELL_PACKAGE, EARN_POINTS: last usable second */
        uint64_t late_grace_s;              /* CREATE_RANGE: how long after its hold expired
                                               a completion is still taken (forced capture) */
        uint64_t offline_local_s;           /* PURCHASE with REQUEST_OFFLINE: when the terminal
                                               approved it, its local wall clock as seconds
                                               from 1970-01-01T00:00 (the range's zone makes
                                               it UTC) */
    };
    union {
        int64_t volume_ml;                  /* fuel dispensed (PREAUTH: most to dispense) */
        int64_t offline_floor_minor;        /* CREATE_RANGE: most a terminal may approve
                                               offline (0: none is posted) */
    };
    union {
        int64_t odometer;                   /* km, with REQUEST_ODOMETER_PRESENT */
        int64_t offline_age_s;              /* CREATE_RANGE: how old an offline sale may be
                                               when it is advised */
    };
    uint32_t outlet_code;                   /* where (hash of merchant/outlet; 0: not said) */
    uint32_t contract_id;                   /* SET_CONTRACT, ASSIGN_CARD */
    uint8_t products[32];                   /* product codes of the sale, as a bitmap */
    uint32_t actor;                         /* an operator's identity code (0: terminal) */
    int32_t utc_offset_min;                 /* CREATE_RANGE: local time when zone_id is 0 */
    uint32_t merchant_code;                 /* the merchant it is made for (hash of its id);
                                               0: for none (an operator). A request naming an
                                               earlier one must be of that one's merchant */
    uint8_t details_digest[16];             /* a terminal's card operation: SHA-256 prefix of
                                               its TransactionDetails payload (none: zero) */
} CoreRequest;
#pragma pack(pop)

#endif
