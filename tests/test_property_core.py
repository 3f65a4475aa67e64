"""fastcore against the pure-Python reference model, on random request sequences.

Hypothesis draws loads, purchases, refunds, reversals (also of requests not sent yet),
retries, reused request ids with other content, status changes, duplicate issuing and
invalid amounts, fleet sales, and loyalty: earn rules, tiers, bonuses and discounts,
sales paid otherwise, earns, redemptions, expiries, transfers and returns, in random
batch groupings. Both sides get the same packed requests;
every reply, account and journal entry must agree, and the audit must pass after every
batch.
"""
import datetime
import tempfile

from hypothesis import event, example, given, strategies as st

from cardgate.fastcore import ledger, records
from cardgate.fastcore.records import (CardStatus, DiscountStep, HoldState, Measure, Op,
                                       PaymentMethod, Period, Prompt, Result, Rule, RuleKind,
                                       RuleScope, Slot, Tier)
from cardgate.gateway.loyalty import settlement
from cardgate.gateway.office.money_settlement import settle_money
from cardgate.gateway.store import audit
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import yyyymm_of

from reference_model import ReferenceLedger

START_S = 1_790_000_000          # 2026-09-21
CARD_KEYS = [bytes([i]) * 32 for i in range(1, 9)]
# card index -> (range, expiry); index 5 is never issued (an unknown card); card 4
# expires at the end of the start month, which batches may cross
CARDS = {0: (1, 209912), 1: (1, 209912), 2: (1, 202001), 3: (2, 209912),
         4: (1, yyyymm_of(START_S))}
CURRENCIES = ["EUR", "USD", "GBP"]

# Fleet: card 6 has its own restriction profile 1; card 7 draws on contract 1, whose
# profile 2 its cards share. Products 1 and 2 are fuels, 30 is shop goods, 99 unknown.
FLEET_CARD, CONTRACT_CARD = 6, 7
DIESEL, PETROL, SHOP, UNKNOWN_PRODUCT = 1, 2, 30, 99
OUTLET_NORTH, OUTLET_SOUTH, REGION_NORTH = 0x0A0A0A0A, 0x0B0B0B0B, 0x0C0C0C0C
D, W, M, L, T = Period.DAY, Period.WEEK, Period.MONTH, Period.LIFETIME, Period.TRANSACTION
PROFILE_1 = dict(products=[DIESEL], prompts=Prompt.ODOMETER, places=[REGION_NORTH],
                 limits={(T, Measure.VOLUME): 60_000, (D, Measure.VOLUME): 100_000,
                         (D, Measure.MONEY): 8_000, (W, Measure.COUNT): 6,
                         (L, Measure.MONEY): 30_000},
                 soft=[(T, Measure.VOLUME), (W, Measure.COUNT)])
PROFILE_2 = dict(prompts=Prompt.DRIVER, minute_from=6 * 60, minute_to=22 * 60, utc_offset_min=60,
                 limits={(D, Measure.COUNT): 4, (T, Measure.MONEY): 3_000, (M, Measure.MONEY): 40_000})
CREDIT_LIMIT = 10_000

# Loyalty: outlet north belongs to partner 1 (a fuel network), south to partner 2 (a
# cafe). Program variants (0: expiry only; 3: overlapping tiers, invalid) and earn rule
# sets (3-6 are refused: an unknown outlet, an unknown product, a rule per 0, an unknown
# partner).
PARTNER_FUEL, PARTNER_CAFE = 1, 2
OUTLET_UNKNOWN = 0x0D0D0D0D
SATURDAY_SUNDAY = 0b110_0000
PROGRAM_VARIANTS = [
    {},
    dict(tiers=(Tier("Silver", 5_000, 1250), Tier("Gold", 20_000, 1500)),
         discounts=(DiscountStep(0, 300), DiscountStep(30_000, 500)), welcome_points=50,
         birthday_points=100, birthday_window_days=3, point_value_millis=10_000),
    dict(stack_rules=True, tiers_by_points=True, tiers=(Tier("Gold", 300, 2000),),
         discounts=(DiscountStep(10_000, 250),), birthday_points=7, birthday_window_days=0),
    dict(tiers=(Tier("A", 5_000, 1100), Tier("B", 5_000, 1200))),
    dict(point_value_millis=500, no_earn_when_redeeming=True, welcome_points=10,
         tiers=(Tier("Gold", 1_000, 3000),)),
]
RULE_SETS = [
    (),
    (Rule(1, RuleKind.PER_AMOUNT, 1, 1_000),
     Rule(2, RuleKind.PER_VOLUME, 2, 1_000, RuleScope.OUTLETS, (OUTLET_NORTH,), products=(DIESEL,)),
     Rule(3, RuleKind.PER_VOLUME, 1, 1_000, products=(DIESEL, PETROL)),
     Rule(4, RuleKind.MULTIPLIER, 1500, 0, days_mask=SATURDAY_SUNDAY),
     Rule(5, RuleKind.FIXED, 25, 0, products=(SHOP,))),
    (Rule(1, RuleKind.PER_AMOUNT, 3, 700, RuleScope.PARTNER, partner_id=PARTNER_CAFE),
     Rule(2, RuleKind.MULTIPLIER, 2000, 0, methods=(PaymentMethod.CASH,)),
     Rule(3, RuleKind.FIXED, 10, 0, minute_from=6 * 60, minute_to=12 * 60),
     Rule(4, RuleKind.PER_AMOUNT, 1, 100, from_s=START_S + 10 * 86400, until_s=START_S + 40 * 86400),
     Rule(5, RuleKind.PER_VOLUME, 7, 3_000, RuleScope.PARTNER, partner_id=PARTNER_FUEL)),
    (Rule(1, RuleKind.PER_AMOUNT, 1, 10, RuleScope.OUTLETS, (OUTLET_UNKNOWN,)),),
    (Rule(1, RuleKind.FIXED, 5, 0, products=(UNKNOWN_PRODUCT,)),),
    (Rule(1, RuleKind.PER_AMOUNT, 1, 0),),
    (Rule(1, RuleKind.PER_AMOUNT, 1, 10, RuleScope.PARTNER, partner_id=9),),
]

# An amount, or how to derive it from the card's state: exactly what is available
# (or left to refund), one more, or half of it. Boundaries are where bugs live.
amounts = st.one_of(st.integers(1, 20_000), st.integers(1, 200),
                    st.sampled_from(["all", "all+1", "half", "all", "all+1"]),
                    st.sampled_from([records.AMOUNT_MINOR_MAX, records.BALANCE_MINOR_MAX // 3]))
card_index = st.integers(0, len(CARD_KEYS) - 1)
load = st.tuples(st.just("load"), card_index, amounts, st.sampled_from([0, 0, 0, 1]))
purchase = st.tuples(st.just("purchase"), card_index, amounts, st.sampled_from([0, 0, 0, 1]),
                     st.sampled_from([None, None, 1, 2]), st.booleans())
refund = st.tuples(st.just("refund"), card_index, amounts, st.integers(0, 10_000))
reverse = st.tuples(st.just("reverse"), st.integers(0, 10_000))
preauth = st.tuples(st.just("preauth"), card_index, amounts, st.booleans(), st.sampled_from([None, 1, 2]))
complete = st.tuples(st.just("complete"), card_index, st.one_of(amounts, st.just(0)),
                     st.integers(0, 10_000))
void = st.tuples(st.just("void"), st.integers(0, 10_000))
operation = st.one_of(
    load, purchase, purchase, refund, refund, refund, reverse, reverse,
    preauth, preauth, complete, complete, void,
    st.tuples(st.just("reverse_unsent"), st.integers(0, 10_000)),
    st.tuples(st.just("late_original"), card_index, amounts, st.integers(0, 10_000)),
    st.tuples(st.just("retry"), st.integers(0, 10_000)),
    st.tuples(st.just("reuse_id"), st.integers(0, 10_000), amounts),
    st.tuples(st.just("status"), card_index, st.sampled_from([CardStatus.BLOCKED, CardStatus.ACTIVE,
                                                              CardStatus.CLOSED])),
    st.tuples(st.just("issue_again"), card_index),
    st.tuples(st.just("set_pin"), card_index, st.sampled_from([1, 2])),
    st.tuples(st.just("adjust"), card_index, amounts, st.booleans(), st.integers(1, 4)),
    st.tuples(st.just("clear"), card_index),
    st.tuples(st.just("sell_package"), card_index, st.integers(1, 12), st.sampled_from([-1, 1, 10, 40])),
    st.tuples(st.just("use_units"), card_index, st.integers(1, 8)),
    st.tuples(st.just("use_units"), card_index, st.integers(1, 8)),
    st.tuples(st.just("deactivate"), card_index),
    st.tuples(st.just("close_payout"), card_index),
    st.tuples(st.just("close_move"), card_index, card_index),
    st.tuples(st.just("bad_amount"), card_index, st.sampled_from([0, -1, -10**12,
                                                                  records.AMOUNT_MINOR_MAX + 1])),
    # fleet sales: op, card, amount, volume, odometer, products, outlet, partial, driver id
    *[st.tuples(st.just("fleet"), st.sampled_from(["purchase", "preauth"]),
                st.sampled_from([FLEET_CARD, FLEET_CARD, CONTRACT_CARD, 0]), amounts,
                st.sampled_from([0, 20_000, 45_000, 64_210, 100_001, -5]),
                st.sampled_from([None, "same", "up", "up", "down", -1]),
                st.sampled_from([(), (DIESEL,), (DIESEL,), (PETROL,), (SHOP,), (DIESEL, SHOP),
                                 (UNKNOWN_PRODUCT,)]),
                st.sampled_from([OUTLET_NORTH, OUTLET_NORTH, OUTLET_SOUTH, 0]),
                st.booleans(), st.booleans())] * 3,
    st.tuples(st.just("fleet_complete"), st.one_of(amounts, st.just(0)),
              st.sampled_from([0, 30_000, 64_210, 120_000]), st.integers(0, 10_000),
              st.sampled_from([(DIESEL,), (DIESEL,), (PETROL,), ()])),
    st.tuples(st.just("contract_limit"), st.sampled_from([0, 2_000, 10_000, 50_000])),
    # loyalty points: lots valid for some days (0: never), redeemed earliest-expiring first
    st.tuples(st.just("earn"), card_index, st.integers(1, 500), st.sampled_from([0, -1, 1, 30, 400])),
    st.tuples(st.just("earn"), card_index, st.integers(1, 500), st.sampled_from([0, -1, 1, 30, 400])),
    *[st.tuples(st.just("redeem"), card_index, st.one_of(st.integers(1, 600), st.just("all"),
                                                        st.just("all+1")))] * 2,
    st.tuples(st.just("program"), st.sampled_from(list(records.ExpiryKind)), st.integers(0, 13),
              st.sampled_from([0, 0, 1, 2, 30]), st.integers(0, len(PROGRAM_VARIANTS) - 1)),
    st.tuples(st.just("rules"), st.integers(0, len(RULE_SETS) - 1), st.sampled_from([1, 1, 1, 2])),
    # a sale paid otherwise: card, amount, volume, products, outlet, payment method
    # (and points tendered: some, all the card has, or more than the sale needs)
    *[st.tuples(st.just("loyalty_sale"), st.sampled_from([6, 6, 7, 0, 3, 5]), amounts,
                st.sampled_from([0, 20_000, 50_000]),
                st.sampled_from([(), (DIESEL,), (PETROL,), (SHOP,), (DIESEL, SHOP)]),
                st.sampled_from([OUTLET_NORTH, OUTLET_SOUTH, 0]),
                st.sampled_from([PaymentMethod.CASH, PaymentMethod.BANK_CARD, PaymentMethod.OTHER, 0]),
                st.sampled_from([0, 0, 0, 30, "all", 10**9, -1]))] * 4,
    st.tuples(st.just("loyalty_return"), amounts, st.integers(0, 10_000)),
    st.tuples(st.just("loyalty_return"), amounts, st.integers(0, 10_000)),
    # held redemptions: reserve points, then confirm (some or all) or release them
    st.tuples(st.just("reserve"), st.sampled_from([6, 6, 7, 0, 3]),
              st.one_of(st.integers(1, 300), st.just("all"), st.just("all+1"))),
    *[st.tuples(st.just("settle"), st.sampled_from(["confirm", "confirm", "release"]),
                st.one_of(st.integers(1, 300), st.just("all"), st.just("all+1")),
                st.integers(0, 10_000))] * 3,
    st.tuples(st.just("stage"), card_index, st.sampled_from([1, 2, 2, 0, 3])),
    # a lost card replaced by a spare (cards 2 and 4 are issued and never used, 5 unknown)
    st.tuples(st.just("replace"), card_index, st.sampled_from([2, 4, 4, 5, 0, 3])),
    st.tuples(st.just("serials"), st.sampled_from([1, 2, 9]), st.sampled_from([1, 500, 10**6, 10**6 + 1, 0])),
    st.tuples(st.just("set_member"), card_index, st.sampled_from(["today", "in 2 days", 1231, 229, 1332])),
    st.tuples(st.just("adjust_points"), card_index, st.one_of(st.integers(1, 300), st.just("all"),
                                                             st.just("all+1")),
              st.booleans(), st.integers(1, 5), st.sampled_from([0, 7, 0xDEAD])),
    st.tuples(st.just("transfer_points"), card_index, card_index,
              st.one_of(st.integers(1, 300), st.just("all"), st.just("all+1"))),
)
batch = st.tuples(st.sampled_from([0, 3600, 20 * 86400]),
                  st.lists(operation, min_size=1, max_size=12))
# Half the runs start with a program that has tiers, discounts and bonuses, and earn
# rules, so that sales earn from the first batch on.
LOYALTY_START = [(0, [("program", records.ExpiryKind.MONTH_END_AFTER, 1, 0, 1), ("rules", 1, 1),
                      ("earn", 6, 400, 0), ("earn", 7, 90, 0),
                      ("loyalty_sale", 6, 5_000, 0, (), OUTLET_SOUTH, PaymentMethod.CASH, 30),
                      ("reserve", 7, 20)]),
                 (0, [("program", records.ExpiryKind.DAYS_AFTER, 40, 2, 2), ("rules", 2, 1)]),
                 (0, [("program", records.ExpiryKind.NEVER, 0, 0, 4), ("rules", 1, 1),
                      ("earn", 6, 400, 0), ("earn", 7, 90, 0),
                      ("loyalty_sale", 6, 5_000, 0, (), OUTLET_SOUTH, PaymentMethod.CASH, 30),
                      ("reserve", 7, 20)])]
batches = st.tuples(st.sampled_from([None, None, 0, 1, 2]), st.lists(batch, min_size=2, max_size=12)).map(
    lambda drawn: ([LOYALTY_START[drawn[0]]] if drawn[0] is not None else []) + drawn[1])


# A fixed story that reaches every decline, run as an explicit example on every test
# run; the random batches then explore around it. Indices into what was sent: 0-1 the
# ranges, 2-6 cards 0-4 issued, 7-9 loads of 5,000 on cards 0, 1 and 3.
BOUNDARY_STORY = [
    (0, [("purchase", 0, "half", 0, None),  # 10: approved 2,500
         ("purchase", 5, 100, 0, None),     # unknown card
         ("load", 2, 100, 0),               # expired card
         ("purchase", 4, 100, 0, None),     # issued, never loaded: not active
         ("purchase", 0, 100, 1, None),     # USD on a EUR card
         ("purchase", 1, 20_000, 0, None),  # insufficient funds
         ("bad_amount", 0, 0),
         ("issue_again", 0)]),
    (3600, [("refund", 0, "all+1", 1),      # more than the purchase
            ("refund", 1, 100, 3),          # another card than the purchase's
            ("refund", 0, "half", 1),       # approved 1,250
            ("reverse", 10),                # purchase with a refund: not reversible
            ("refund", 1, 100, 8)]),        # a load is not refundable
    (3600, [("status", 1, CardStatus.BLOCKED),
            ("purchase", 1, 10, 0, None),   # blocked
            ("reverse_unsent", 0),
            ("late_original", 0, 10, 0),    # its reversal came first
            ("retry", 10),
            ("reuse_id", 10, 7),            # same id, other content
            ("refund", 0, "all", 1),        # exactly the rest: approved
            ("reverse", 20)]),              # undo the first refund
    (20 * 86400, [("load", 4, 100, 0),      # card 4's month is over
                  ("set_pin", 0, 1),
                  ("purchase", 0, 10, 0, 2),  # the wrong PIN
                  ("purchase", 0, 10, 0, 1)]),  # the right one
    (0, [("preauth", 3, 300, False, None),   # 35: a pump holds 300 (USD card, 5,000)
         ("preauth", 3, 9000, True, None),   # 36: partial: the 4,700 left
         ("preauth", 3, 10, False, None)]),  # nothing left to hold
    (0, [("complete", 3, 301, 4),           # more than hold 35
         ("complete", 3, 200, 4),           # dispensed 200, 100 released
         ("complete", 3, 200, 4),           # twice
         ("void", 1),                       # hold 36 released
         ("complete", 3, 5, 1),             # a voided hold
         ("void", 0)]),                     # an unknown hold
    (0, [("preauth", 3, 100, False, None)]),
    (0, [("complete", 3, "all", 1),         # exactly what was held
         ("preauth", 3, 100, False, None)]),
    (3600, [("complete", 3, 50, 1)]),       # its timeout passed: expired at batch start
    (0, [("set_pin", 0, 1),
         ("purchase", 0, 1, 0, 2), ("purchase", 0, 1, 0, 2),
         ("purchase", 0, 1, 0, 2),          # the third wrong PIN blocks the card
         ("purchase", 0, 1, 0, 1),          # now even the right one is refused
         ("status", 0, CardStatus.ACTIVE),  # the issuer unblocks it
         ("purchase", 0, 1, 0, 1)]),
    (0, [("adjust", 0, 500, False, 1),     # goodwill credit
         ("adjust", 0, 10**9, True, 2),     # more than it has
         ("deactivate", 0),                 # value left: refused
         ("clear", 0),                      # cleared, the amount recorded
         ("deactivate", 0),
         ("load", 0, 100, 0),               # closed for good
         ("deactivate", 0)]),
    (0, [("load", 3, 5_000, 0),             # 9,700 on the card
         ("load", 3, 301, 0),               # over the range's 10,000 balance maximum
         ("adjust", 3, 6_000, True, 1),     # a correction takes 6,000 off
         ("load", 3, 3_001, 0),             # over the range's 8,000 a day
         ("load", 3, 3_000, 0),
         ("preauth", 3, 200, False, None),  # a pump holds 200
         ("clear", 3),                      # clears what is available, not the hold
         ("deactivate", 3)]),               # the hold still stands: refused
    (0, [("sell_package", 3, 10, 1),        # 10 washes for a day
         ("use_units", 3, 4),
         ("use_units", 3, 7),               # only 6 left
         ("sell_package", 3, 5, 10),        # 5 more, for ten days
         ("use_units", 3, 7),               # 6 from the first package, then 1 from the second
         ("sell_package", 3, 2, -1)]),      # a package that is already over
    (2 * 86400, [("use_units", 3, 4),       # the second package's last 4
                 ("use_units", 3, 1)]),
    (0, [("sell_package", 3, 3, 1)]),
    (86400, [("use_units", 3, 1)]),         # its very last second still counts
    (1, [("use_units", 3, 1)]),             # one second later its 2 units have expired
    # Fleet card 6 (profile 1: diesel only, odometer, region north, 100 L and 80.00 a
    # day, 800.00 a life, soft: 60 L a sale and 6 sales a week); 200.00 loaded.
    (0, [("fleet", "purchase", 6, 1_000, 20_000, None, (DIESEL,), OUTLET_NORTH, False, False),
         ("fleet", "purchase", 6, 1_000, 20_000, "up", (DIESEL,), OUTLET_NORTH, False, False),
         ("fleet", "purchase", 6, 1_000, 20_000, "down", (DIESEL,), OUTLET_NORTH, False, False),
         ("fleet", "purchase", 6, 1_000, 20_000, "up", (PETROL,), OUTLET_NORTH, False, False),
         ("fleet", "purchase", 6, 1_000, 20_000, "up", (DIESEL,), OUTLET_SOUTH, False, False),
         ("fleet", "purchase", 6, 500, 0, "up", (SHOP,), OUTLET_NORTH, False, False),
         ("fleet", "purchase", 6, 1_000, 20_000, "up", (UNKNOWN_PRODUCT,), OUTLET_NORTH, False, False),
         ("fleet", "purchase", 6, 1_000, 64_210, "up", (DIESEL,), OUTLET_NORTH, False, False),
         ("fleet", "purchase", 6, 1_000, 20_000, "up", (DIESEL,), OUTLET_NORTH, False, False),
         ("fleet", "preauth", 6, 9_000, 0, "up", (DIESEL,), OUTLET_NORTH, False, False),
         ("fleet", "preauth", 6, 9_000, 0, "up", (DIESEL,), OUTLET_NORTH, True, False)]),
    (0, [("fleet_complete", 2_000, 20_000, 1, (DIESEL,)),
         ("fleet_complete", 2_000, 10_000, 1, (PETROL,)),
         ("fleet_complete", 2_000, 10_000, 1, (DIESEL,)),
         ("fleet", "purchase", 6, 100, -5, "up", (DIESEL,), OUTLET_NORTH, False, False)]),
    # Contract card 7 (profile 2: driver id, 06:00-22:00 at UTC+1, 30.00 a sale, 3 a day);
    # the contract holds 5.00 and lends up to 100.00.
    (0, [("fleet", "purchase", 7, 1_000, 0, None, (), 0, False, False),
         ("fleet", "purchase", 7, 3_001, 0, None, (), 0, False, True),
         ("fleet", "purchase", 7, 2_900, 0, None, (), 0, False, True),
         ("fleet", "preauth", 7, 2_900, 0, None, (), 0, False, True),
         ("fleet", "purchase", 7, 2_900, 0, None, (), 0, False, True),
         ("fleet", "purchase", 7, 2_900, 0, None, (), 0, False, True),
         ("fleet", "purchase", 7, 1_000, 0, None, (), 0, False, True),
         ("fleet", "purchase", 7, 100, 0, None, (), 0, False, True),
         ("clear", 7),
         ("contract_limit", 2_000)]),
    (8 * 3600, [("fleet", "purchase", 7, 100, 0, None, (), 0, False, True)]),
    # Loyalty points on card 3: lots of 100 (30 days), 50 (never expire), 70 (1 day).
    (0, [("earn", 3, 100, 30), ("earn", 3, 50, 0), ("earn", 3, 70, 1),
         ("earn", 3, 5, -1)]),                  # a lot that would be over already
    (0, [("redeem", 3, 60),                     # from the 1-day lot first: 10 left there
         ("redeem", 3, 161)]),                  # 160 available
    (2 * 86400, [("redeem", 3, 150),            # the 1-day lot's 10 expired; 30-day lot, then the rest
                 ("redeem", 3, 1)]),
    # Card 6 is in range 1, whose program says: usable after 2 days, until the end of
    # the next month.
    (0, [("earn", 6, 100, 0)]),
    (0, [("redeem", 6, 50)]),                   # earned, but in its returns window
    (2 * 86400, [("redeem", 6, 50)]),
    # Operators correct points (with a reason, and who they are); members give points away.
    (0, [("adjust_points", 3, 30, False, 2, 7),     # goodwill: a new lot
         ("adjust_points", 3, 500, True, 3, 7),     # more than the card has
         ("transfer_points", 3, 1, 20),             # card 1 is blocked
         ("transfer_points", 3, 3, 20),             # to itself: invalid
         ("transfer_points", 3, 6, 20)]),
    # Earning: rules naming what does not exist are refused, so are overlapping tiers;
    # then program 1 gets tiers, discounts, bonuses, and rule set 1.
    (0, [("rules", 3, 1),                       # an unknown outlet
         ("rules", 6, 1),                       # an unknown partner
         ("rules", 4, 1),                       # an unknown product
         ("rules", 5, 1),                       # a rule per 0
         ("rules", 1, 9),                       # no program 9
         ("program", records.ExpiryKind.MONTH_END_AFTER, 1, 0, 3),   # overlapping tiers
         ("program", records.ExpiryKind.MONTH_END_AFTER, 1, 0, 1),
         ("rules", 1, 1),
         ("set_member", 6, "in 2 days"),
         ("loyalty_sale", 3, 100, 0, (), 0, PaymentMethod.CASH),     # range 2: no program
         # 120.00 less 3 %, 50 L of diesel at north: welcome 50, birthday week 100
         ("loyalty_sale", 6, 12_000, 50_000, (DIESEL,), OUTLET_NORTH, PaymentMethod.CASH)]),
    # 300.00 with shop goods at south (Silver x1.25, +25), the card reaches Gold; every
    # usable point is redeemed; the 120.00 sale comes back, its 250 points partly spent.
    (0, [("loyalty_sale", 6, 30_000, 0, (SHOP,), OUTLET_SOUTH, PaymentMethod.BANK_CARD),
         ("redeem", 6, "all"),
         ("loyalty_return", "all", 0),
         ("redeem", 6, 1),                      # points owed
         ("transfer_points", 6, 7, 1),          # points owed
         ("loyalty_sale", 6, 40_000, 0, (), OUTLET_SOUTH, PaymentMethod.CASH),   # 5 % now
         ("redeem", 6, 1)]),                    # still owed
    (0, [("loyalty_sale", 6, 140_000, 0, (), OUTLET_SOUTH, PaymentMethod.CASH),  # repaid
         ("redeem", 6, 1)]),
    # Mixed tender: 60 points pay 6.00 (a point is worth 0.10) of a 100.00 sale less 5 %;
    # more than the sale needs is cut to what it needs; a program without a point value
    # takes none.
    (0, [("loyalty_sale", 6, 10_000, 0, (), OUTLET_NORTH, PaymentMethod.CASH, 60),
         ("loyalty_sale", 6, 100, 0, (), OUTLET_NORTH, PaymentMethod.CASH, 50)]),
    (0, [("program", records.ExpiryKind.MONTH_END_AFTER, 1, 0, 2),
         ("loyalty_sale", 6, 100, 0, (), OUTLET_NORTH, PaymentMethod.CASH, 5)]),
    # Held redemptions on card 6 (8 points); "settle" names the approved reservations
    # 0, 1, 2 in the order made.
    (0, [("reserve", 6, 5),
         ("reserve", 6, 4)]),                   # only 3 left
    (0, [("settle", "confirm", 6, 0),           # more than held
         ("settle", "confirm", 2, 0),           # 2 redeemed, 3 back
         ("settle", "release", 0, 0),           # already confirmed
         ("reserve", 6, 4)]),
    (0, [("settle", "release", 0, 1),
         ("settle", "confirm", 1, 1),           # released already
         ("reserve", 6, 6)]),
    (3600, [("settle", "confirm", 1, 2),        # its hold timed out at the batch's start
            ("settle", "confirm", 1, -1)]),     # a request that reserved nothing
    # Lost cards: card 6 (points, a fleet profile) is replaced by spare card 5.
    (0, [("spare", 5),
         ("fleet", "preauth", 6, 500, 0, "up", (DIESEL,), OUTLET_NORTH, False, False),
         ("replace", 6, 5),                     # an open pre-authorization: settle it first
         ("replace", 3, 5),                     # another range's card
         ("replace", 7, 4)]),                   # card 4 has expired: no replacement
    (3600, [("replace", 6, 5),                  # the hold timed out: replaced
            ("replace", 6, 5),                  # closed now
            ("redeem", 5, 1)]),                 # its points came along
    # Closing with the value paid out or moved to another card, in one step.
    (0, [("status", 1, CardStatus.ACTIVE),
         ("close_move", 5, 5),                  # to itself: refused
         ("close_move", 5, 7),                  # to a card drawing on a contract: refused
         ("close_move", 5, 3),                  # to a card of another currency: refused
         ("close_move", 5, 1),                  # its value moves to card 1; card 5 closes
         ("load", 1, 300, 0),
         ("close_move", 1, 5),                  # to a closed card: refused
         ("close_payout", 1),                   # paid out to the holder; card 1 closes
         ("load", 5, 100, 0)]),                 # closed for good
]


class Scenario:
    """Turns drawn operations into packed requests, remembering what was sent."""

    def __init__(self, model):
        self.model = model    # consulted only to aim amounts and references at boundaries
        self.now_s = START_S  # the time of the batch being built
        self.counter = 0
        self.sent = []        # packed requests, in order
        self.unsent = []      # ids named by a reversal before any request used them

    def new_id(self):
        self.counter += 1
        return self.counter.to_bytes(16, "big")

    def pick(self, index):
        return self.sent[index % len(self.sent)] if self.sent else None

    def pick_purchase(self, index):
        """Mostly an approved purchase still standing; sometimes any earlier request."""
        purchases = [rec for rec in self.model.requests.values()
                     if rec.request and records.unpack_request(rec.request).op in
                     (Op.PURCHASE, Op.COMPLETE, Op.LOYALTY_SALE)
                     and rec.reply["result"] == Result.APPROVED]
        if purchases and index % 4:
            return purchases[index % len(purchases)]
        return self.model.requests.get(records.unpack_request(self.pick(index)).request_id)

    def card_of(self, card_id):
        return next(i for i, k in enumerate(CARD_KEYS) if self.model.pan_index.get(k) == card_id)

    def available(self, card):
        card_id = self.model.pan_index.get(CARD_KEYS[card])
        if card_id is None:
            return 100
        record = self.model.cards[card_id]
        acc = self.model.accounts[(self.model.value_owner(record), Slot.CARD_VALUE)]
        return acc.balance_minor - acc.pending_minor + self.model.credit_limit(record)

    def points(self, card):
        """Points the card can redeem now: its open lots still valid and out of their
        returns window."""
        card_id = self.model.pan_index.get(CARD_KEYS[card])
        return sum(lot.quantity_left for lot in self.model.point_lots.values()
                   if lot.card_id == card_id and lot.status == HoldState.OPEN
                   and (lot.valid_until_s or records.LOT_NEVER) >= self.now_s
                   and lot.available_from_s <= self.now_s)

    def odometer(self, card, how):
        """A reading relative to the card's last one: the same, higher, lower, or invalid."""
        if how is None or how == -1:
            return how
        usage = self.model.usage.get(self.model.pan_index.get(CARD_KEYS[card]))
        last = usage.odometer if usage is not None and usage.odometer is not None else 1_000
        return {"same": last, "up": last + 250, "down": last - 1}[how]

    def fleet_setup(self):
        """Catalog, outlets, profiles, a contract, cards 6 and 7; not among `sent` (the
        story's indices), but retried like everything else by the model comparison."""
        def config(op, **kw):
            return records.pack_request(op, self.new_id(), **kw)
        out = [config(Op.DEFINE_PRODUCT, product_code=code, product_kind=kind, product_name=name)
               for code, kind, name in ((DIESEL, 1, "diesel"), (PETROL, 1, "petrol 95"),
                                        (SHOP, 2, "shop"))]
        for partner, name in ((PARTNER_FUEL, "Fuel network"), (PARTNER_CAFE, "Cafe")):
            out.append(config(Op.DEFINE_PARTNER, partner_id=partner, partner_name=name))
        for code, region, name, partner in ((OUTLET_NORTH, REGION_NORTH, "m1/north", PARTNER_FUEL),
                                            (OUTLET_SOUTH, 0, "m2/south", PARTNER_CAFE)):
            out.append(config(Op.DEFINE_OUTLET, outlet_code=code,
                              payload=records.pack_outlet(code, region, name, partner)))
        for profile_id, profile in ((1, PROFILE_1), (2, PROFILE_2)):
            out.append(config(Op.SET_PROFILE, profile_id=profile_id,
                              payload=records.pack_profile(profile_id, **profile)))
        out.append(config(Op.SET_CONTRACT, contract_id=1, currency="EUR",
                          credit_limit_minor=CREDIT_LIMIT, profile_id=2))
        for card in (FLEET_CARD, CONTRACT_CARD):
            out.append(config(Op.ISSUE_CARD, card_key=CARD_KEYS[card], range_id=1,
                              expiry_yyyymm=209912, pan_first6=627700, pan_last4=1000 + card,
                              pan_length=16))
        out.append(config(Op.ASSIGN_CARD, card_key=CARD_KEYS[FLEET_CARD], profile_id=1))
        out.append(config(Op.ASSIGN_CARD, card_key=CARD_KEYS[CONTRACT_CARD], contract_id=1))
        # Money issued by a coalition partner (the first load at its outlet): the fleet
        # card's by the cafe, card 0's by the fuel network; each sale at the other
        # partner's outlet settles money between them.
        out.append(self.money(Op.LOAD, FLEET_CARD, 20_000, outlet=OUTLET_SOUTH))
        out.append(self.money(Op.LOAD, 0, 1_000, outlet=OUTLET_NORTH))
        out.append(self.money(Op.LOAD, CONTRACT_CARD, 500))
        # Loyalty program 1 on range 1: points expire at the end of the next month (UTC+1)
        # and are usable two days after they were earned.
        out.append(self.program(records.ExpiryKind.MONTH_END_AFTER, 1, 2))
        return out

    def program(self, expiry_kind, expiry_n, pending_days, variant=0):
        return records.pack_request(Op.SET_PROGRAM, self.new_id(), payload=records.pack_program(
            1, expiry_kind, expiry_n, pending_days, utc_offset_min=60, range_ids=[1],
            **PROGRAM_VARIANTS[variant]))

    def birthday(self, when):
        """month * 100 + day: a drawn one, or today's / the day after tomorrow's (UTC+1)."""
        if isinstance(when, int):
            return when
        local = self.now_s + 3600 + (2 * 86400 if when == "in 2 days" else 0)
        day = datetime.datetime.fromtimestamp(local, datetime.timezone.utc)
        return day.month * 100 + day.day

    @staticmethod
    def resolve(amount, boundary):
        if isinstance(amount, int):
            return amount
        value = {"all": boundary, "all+1": boundary + 1, "half": boundary // 2}[amount]
        return max(value, 1)

    def setup(self):
        out = [records.pack_request(Op.CREATE_RANGE, self.new_id(), range_id=1, currency="EUR",
                                    iin_prefix=627700, iin_digits=6, pan_length=16),
               # range 2 caps balances at 10,000 and loads at 8,000 a day
               records.pack_request(Op.CREATE_RANGE, self.new_id(), range_id=2, currency="USD",
                                    iin_prefix=627701, iin_digits=6, pan_length=16,
                                    balance_max_minor=10_000, load_per_day_max_minor=8_000)]
        for i, (range_id, expiry) in CARDS.items():
            out.append(records.pack_request(Op.ISSUE_CARD, self.new_id(), card_key=CARD_KEYS[i],
                                            range_id=range_id, expiry_yyyymm=expiry,
                                            pan_first6=627700, pan_last4=1000 + i, pan_length=16))
        for card, currency in ((0, "EUR"), (1, "EUR"), (3, "USD")):
            out.append(self.money(Op.LOAD, card, 5_000, currency))
        self.sent.extend(out)
        return out

    def money(self, op, card, amount, currency="EUR", ref=None, request_id=None, pin=None,
              partial=False, outlet=0):
        return records.pack_request(op, request_id or self.new_id(), card_key=CARD_KEYS[card],
                                    amount_minor=amount, currency=currency, ref_request_id=ref,
                                    pin_verifier=bytes([pin]) * 16 if pin else None,
                                    partial_ok=partial, outlet_code=outlet)

    def pick_hold(self, index):
        """(hold id, Hold): mostly an open hold, sometimes any, sometimes an unknown id."""
        holds = sorted(self.model.holds.items())
        open_ = [h for h in holds if h[1].status == HoldState.OPEN]
        if open_ and index % 3:
            return open_[index % len(open_)]
        if holds and index % 7:
            return holds[index % len(holds)]
        return self.new_id(), None

    def build(self, drawn):
        kind = drawn[0]
        if kind in ("load", "purchase"):
            _, card, amount, cur = drawn[:4]
            pin = drawn[4] if kind == "purchase" else None
            partial = len(drawn) > 5 and drawn[5]
            if kind == "load":
                amount = self.resolve(amount, records.BALANCE_MINOR_MAX - max(self.available(card), 0))
            else:
                amount = self.resolve(amount, self.available(card))
            # at no outlet, or at either coalition partner's (money settlement)
            packed = self.money(Op.LOAD if kind == "load" else Op.PURCHASE, card, amount,
                                CURRENCIES[cur] if card != 3 else "USD", pin=pin, partial=partial,
                                outlet=(0, OUTLET_NORTH, OUTLET_SOUTH)[self.counter % 3])
        elif kind == "preauth":
            _, card, amount, partial, pin = drawn
            amount = self.resolve(amount, self.available(card))
            packed = self.money(Op.PREAUTH, card, amount, "USD" if card == 3 else "EUR", pin=pin,
                                partial=partial)
        elif kind == "complete":
            _, card, amount, which = drawn
            hold_id, hold = self.pick_hold(which)
            if hold is not None and which % 5:
                card = self.card_of(hold.card_id)       # usually the hold's own card
            held = hold.held_minor if hold is not None else 100
            packed = self.money(Op.COMPLETE, card, amount if amount == 0 else self.resolve(amount, held),
                                hold.currency if hold is not None else "EUR", ref=hold_id)
        elif kind == "fleet":
            _, op, card, amount, volume, odometer, products, outlet, partial, driver = drawn
            packed = records.pack_request(
                Op.PURCHASE if op == "purchase" else Op.PREAUTH, self.new_id(),
                card_key=CARD_KEYS[card], amount_minor=self.resolve(amount, self.available(card)),
                currency="EUR", partial_ok=partial, volume_ml=volume,
                odometer=self.odometer(card, odometer), products=products, outlet_code=outlet,
                driver_present=driver)
        elif kind == "fleet_complete":
            _, amount, volume, which, products = drawn
            hold_id, hold = self.pick_hold(which)
            card = self.card_of(hold.card_id) if hold is not None else FLEET_CARD
            held = hold.held_minor if hold is not None else 100
            packed = records.pack_request(
                Op.COMPLETE, self.new_id(), card_key=CARD_KEYS[card], ref_request_id=hold_id,
                amount_minor=amount if amount == 0 else self.resolve(amount, held),
                currency=hold.currency if hold is not None else "EUR", volume_ml=volume,
                products=products, outlet_code=OUTLET_NORTH)       # the pump's outlet
        elif kind == "earn":
            _, card, points, days = drawn
            packed = records.pack_request(Op.EARN_POINTS, self.new_id(), card_key=CARD_KEYS[card],
                                          amount_minor=points, currency=records.POINTS_ASSET,
                                          valid_until_s=self.now_s + days * 86400 if days else 0)
        elif kind == "redeem":
            _, card, points = drawn
            packed = records.pack_request(Op.REDEEM_POINTS, self.new_id(), card_key=CARD_KEYS[card],
                                          amount_minor=self.resolve(points, self.points(card)),
                                          currency=records.POINTS_ASSET)
        elif kind == "program":
            packed = self.program(*drawn[1:])
        elif kind == "rules":
            _, which, program_id = drawn
            payload = records.pack_rules(RULE_SETS[which])
            packed = records.pack_request(Op.SET_RULES, self.new_id(), program_id=program_id,
                                          payload=payload)
        elif kind == "loyalty_sale":
            _, card, amount, volume, products, outlet, method = drawn[:7]
            points = drawn[7] if len(drawn) > 7 else 0
            packed = records.pack_request(
                Op.LOYALTY_SALE, self.new_id(), card_key=CARD_KEYS[card],
                amount_minor=self.resolve(amount, 10_000), currency="USD" if card == 3 else "EUR",
                volume_ml=volume, products=products, outlet_code=outlet, payment_method=method,
                points_tendered=self.resolve(points, self.points(card)) if points else 0)
        elif kind == "loyalty_return":
            _, amount, which = drawn
            sales = [rec for rec in self.model.requests.values()
                     if rec.request and records.unpack_request(rec.request).op == Op.LOYALTY_SALE
                     and rec.reply["result"] == Result.APPROVED]
            sale = sales[which % len(sales)] if sales else None
            card = self.card_of(sale.reply["card_id"]) if sale else 6
            rest = sale.reply["approved_minor"] - sale.refunded_minor if sale else 1
            packed = self.money(Op.REFUND, card, self.resolve(amount, rest),
                                ref=records.unpack_request(sale.request).request_id if sale
                                else self.new_id())
        elif kind == "reserve":
            _, card, points = drawn
            packed = records.pack_request(Op.RESERVE_POINTS, self.new_id(), card_key=CARD_KEYS[card],
                                          amount_minor=self.resolve(points, self.points(card)),
                                          currency=records.POINTS_ASSET, outlet_code=OUTLET_SOUTH)
        elif kind == "settle":
            _, how, points, which = drawn
            held = sorted((rid, rec) for rid, rec in self.model.requests.items()
                          if rec.request and records.unpack_request(rec.request).op == Op.RESERVE_POINTS
                          and (which % 3 == 0 or rec.reply["result"] == Result.APPROVED))
            rid, rec = held[which % len(held)] if held and which >= 0 else (self.new_id(), None)
            card = self.card_of(rec.reply["card_id"]) if rec and rec.reply["card_id"] and \
                which % 5 != 4 else which % len(CARD_KEYS)        # sometimes another card
            packed = records.pack_request(
                Op.CONFIRM_POINTS if how == "confirm" else Op.RELEASE_POINTS, self.new_id(),
                card_key=CARD_KEYS[card], ref_request_id=rid, currency=records.POINTS_ASSET,
                amount_minor=self.resolve(points, rec.reply["approved_minor"] if rec else 1)
                if how == "confirm" else 0)
        elif kind == "spare":
            packed = records.pack_request(Op.ISSUE_CARD, self.new_id(), card_key=CARD_KEYS[drawn[1]],
                                          range_id=1, expiry_yyyymm=209912, pan_first6=627700,
                                          pan_last4=9000 + drawn[1], pan_length=16)
        elif kind == "replace":
            packed = records.pack_request(Op.REPLACE_CARD, self.new_id(), card_key=CARD_KEYS[drawn[1]],
                                          payload=CARD_KEYS[drawn[2]])
        elif kind == "stage":
            packed = records.pack_request(Op.SET_STAGE, self.new_id(), card_key=CARD_KEYS[drawn[1]],
                                          stage=drawn[2])
        elif kind == "serials":
            packed = records.pack_request(Op.ALLOCATE_SERIALS, self.new_id(), range_id=drawn[1],
                                          serial_count=drawn[2])
        elif kind == "set_member":
            packed = records.pack_request(Op.SET_MEMBER, self.new_id(), card_key=CARD_KEYS[drawn[1]],
                                          birthday_mmdd=self.birthday(drawn[2]))
        elif kind == "adjust_points":
            _, card, points, down, reason, actor = drawn
            packed = records.pack_request(
                Op.ADJUST_POINTS, self.new_id(), card_key=CARD_KEYS[card],
                amount_minor=self.resolve(points, self.points(card)), currency=records.POINTS_ASSET,
                adjust_down=down, reason=reason, actor=actor)
        elif kind == "transfer_points":
            _, card, to_card, points = drawn
            packed = records.pack_request(
                Op.TRANSFER_POINTS, self.new_id(), card_key=CARD_KEYS[card],
                amount_minor=self.resolve(points, self.points(card)), currency=records.POINTS_ASSET,
                payload=CARD_KEYS[to_card])
        elif kind == "contract_limit":
            packed = records.pack_request(Op.SET_CONTRACT, self.new_id(), contract_id=1,
                                          currency="EUR", amount_minor=drawn[1], profile_id=2)
        elif kind == "void":
            hold_id, _ = self.pick_hold(drawn[1])
            packed = records.pack_request(Op.VOID, self.new_id(), ref_request_id=hold_id)
        elif kind == "refund":
            _, card, amount, ref = drawn
            original = self.pick_purchase(ref)
            rest = original.reply["approved_minor"] - original.refunded_minor if original else 1
            if original and original.reply["card_id"] and ref % 3:
                card = self.card_of(original.reply["card_id"])   # usually the purchase's card
            elif original and original.reply["card_id"] and card == self.card_of(original.reply["card_id"]):
                card = (card + 1) % 2                               # else another one
            ref_id = records.unpack_request(original.request).request_id \
                if original and original.request else self.new_id()
            packed = self.money(Op.REFUND, card, self.resolve(amount, rest), ref=ref_id)
        elif kind == "reverse":
            packed = records.pack_request(Op.REVERSAL, self.new_id(),
                                          ref_request_id=records.unpack_request(self.pick(drawn[1])).request_id)
        elif kind == "reverse_unsent":
            target = self.new_id()
            self.unsent.append(target)
            packed = records.pack_request(Op.REVERSAL, self.new_id(), ref_request_id=target)
        elif kind == "late_original":
            _, card, amount, which = drawn
            rid = self.unsent[which % len(self.unsent)] if self.unsent else None
            packed = self.money(Op.PURCHASE, card, self.resolve(amount, self.available(card)),
                                request_id=rid)
        elif kind == "retry":
            packed = self.pick(drawn[1])
        elif kind == "reuse_id":
            original = records.unpack_request(self.pick(drawn[1]))
            packed = self.money(Op.PURCHASE, 0, self.resolve(drawn[2], 10) + 1,
                                request_id=original.request_id)
        elif kind == "status":
            packed = records.pack_request(Op.SET_STATUS, self.new_id(), card_key=CARD_KEYS[drawn[1]],
                                          target_status=drawn[2])
        elif kind == "adjust":
            _, card, amount, down, reason = drawn
            amount = self.resolve(amount, self.available(card))
            packed = self.money(Op.ADJUST, card, amount, "USD" if card == 3 else "EUR")
            packed = records.pack_request(Op.ADJUST, records.unpack_request(packed).request_id,
                                          card_key=CARD_KEYS[card], amount_minor=amount,
                                          currency="USD" if card == 3 else "EUR", reason=reason,
                                          adjust_down=down)
        elif kind == "sell_package":
            _, card, units, days = drawn
            packed = records.pack_request(Op.SELL_PACKAGE, self.new_id(), card_key=CARD_KEYS[card],
                                          amount_minor=units, currency=records.UNITS_ASSET,
                                          valid_until_s=self.now_s + days * 86400)
        elif kind == "use_units":
            packed = records.pack_request(Op.USE_UNITS, self.new_id(), card_key=CARD_KEYS[drawn[1]],
                                          amount_minor=drawn[2], currency=records.UNITS_ASSET)
        elif kind in ("clear", "deactivate"):
            packed = records.pack_request(Op.CLEAR if kind == "clear" else Op.DEACTIVATE,
                                          self.new_id(), card_key=CARD_KEYS[drawn[1]], reason=3)
        elif kind in ("close_payout", "close_move"):
            move = kind == "close_move"
            packed = records.pack_request(Op.DEACTIVATE, self.new_id(), card_key=CARD_KEYS[drawn[1]],
                                          reason=5, close_disposition=2 if move else 1,
                                          payload=CARD_KEYS[drawn[2]] if move else None)
        elif kind == "set_pin":
            packed = records.pack_request(Op.SET_PIN, self.new_id(), card_key=CARD_KEYS[drawn[1]],
                                          pin_verifier=bytes([drawn[2]]) * 16)
        elif kind == "issue_again":
            packed = records.pack_request(Op.ISSUE_CARD, self.new_id(), card_key=CARD_KEYS[drawn[1]],
                                          range_id=1, expiry_yyyymm=209912, pan_first6=627700,
                                          pan_last4=7, pan_length=16)
        else:
            _, card, amount = drawn
            packed = self.money(Op.PURCHASE, card, amount)
        self.sent.append(packed)
        return packed


def core_state(store):
    with store.env.begin() as txn:
        accounts, cards = {}, {}
        members, stage_times = {}, {}
        for key, value in txn.cursor(db=store.db_book):
            kind, owner, slot = records.parse_book_key(key)
            if kind in ("point_lot", "points_history"):
                continue                    # indexes and history: the audit checks them
            if kind == "stage_time":
                stage_times[(owner, slot)] = int.from_bytes(value, "big")
                continue
            if kind == "member":
                m = records.unpack_member(value)
                members[owner] = (m.month_index, m.tier, m.welcomed, m.birth_month, m.birth_day,
                                  m.birthday_year, m.tier_review_s, m.lifetime_spend_minor,
                                  list(m.month_spend), list(m.month_points))
            elif kind == "card":
                card = records.unpack_card(value)
                cards[owner] = (card.status, card.pin_set, card.pin_failures, card.profile_id,
                                card.contract_id, card.stage, card.issuer_partner)
            else:
                acc = records.unpack_account(value)
                accounts[(owner, slot)] = (acc.balance_minor, acc.pending_minor, acc.currency,
                                           acc.credits_minor_total, acc.debits_minor_total)
        journal = [records.unpack_journal_entry(v) for _, v in txn.cursor(db=store.db_journal)]
        requests = {}
        for key, value in txn.cursor(db=store.db_requests):
            rec = records.unpack_request_record(value)
            requests[key] = (rec.refunded_minor, rec.flags)
        holds = {k: records.unpack_hold(v) for k, v in txn.cursor(db=store.db_holds)}
        holds = {k: (h.card_id, h.status, h.held_minor, h.completed_minor, h.expires_s,
                     h.value_owner, h.volume_ml, h.counted, h.completed_volume_ml)
                 for k, h in holds.items()}
        packages = {k: records.unpack_lot(v) for db in (store.db_packages, store.db_point_lots)
                    for k, v in txn.cursor(db=db)}
        packages = {k: (p.card_id, p.status, p.quantity_total, p.quantity_left, p.valid_until_s,
                        p.available_from_s, p.partner_id) for k, p in packages.items()}
        usage = {records.journal_seq_of(k): records.unpack_usage(v)
                 for k, v in txn.cursor(db=store.db_usage)}
        usage = {k: (list(u.period_index), [list(x) for x in u.used], list(u.pending), u.odometer)
                 for k, u in usage.items()}
        reviews = {k: (int.from_bytes(v[:8], "big"), int.from_bytes(v[8:16], "big"), v[16])
                   for k, v in txn.cursor(db=store.db_reviews)}
    return accounts, cards, journal, requests, holds, packages, usage, reviews, members, stage_times


def model_state(model):
    accounts = {k: (a.balance_minor, a.pending_minor, a.currency, a.credits_minor_total,
                    a.debits_minor_total) for k, a in model.accounts.items()}
    cards = {cid: (c.status, c.pin_verifier is not None, c.pin_failures, c.profile_id,
                   c.contract_id, c.stage, c.issuer_partner) for cid, c in model.cards.items()}
    stage_times = {(cid, stage): t for cid, c in model.cards.items() for stage, t in c.stage_times.items()}
    requests = {rid: (r.refunded_minor, r.flags) for rid, r in model.requests.items()}
    holds = {k: (h.card_id, h.status, h.held_minor, h.completed_minor, h.expires_s,
                 h.value_owner, h.volume_ml, h.counted, h.completed_volume_ml)
             for k, h in model.holds.items()}
    packages = {k: (p.card_id, p.status, p.quantity_total, p.quantity_left, p.valid_until_s,
                    p.available_from_s, p.partner_id)
                for lots in (model.packages, model.point_lots) for k, p in lots.items()}
    members = {k: (m.month_index, m.tier, m.welcomed, m.birth_month, m.birth_day, m.birthday_year,
                   m.tier_review_s, m.lifetime_spend_minor, m.month_spend, m.month_points)
               for k, m in model.members.items()}
    usage = {k: (u.period_index, u.used, u.pending, u.odometer) for k, u in model.usage.items()}
    return accounts, cards, model.journal, requests, holds, packages, usage, model.reviews, members, \
        stage_times


def run_batch(store, model, packed, now_s):
    now_yyyymm = yyyymm_of(now_s)
    with store.env.begin(write=True) as txn:
        core = records.unpack_replies(
            ledger.apply_batch(txn, store.dbs, b"".join(packed), now_s, now_yyyymm))
    expected = model.apply_batch(packed, now_s, now_yyyymm)
    return core, expected


def play(drawn_batches):
    """Run the set-up, then each drawn batch, through both the core and the model.

    Yields (drawn operations, core replies, model replies, store, model) per batch.
    """
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp, sync=False, map_size_bytes=64 << 20)
        try:
            model = ReferenceLedger()
            scenario = Scenario(model)
            now_s = START_S
            for setup in (scenario.setup(), scenario.fleet_setup()):
                core, expected = run_batch(store, model, setup, now_s)
                assert core == expected
                assert all(r.result == Result.APPROVED for r in core), core
            for step_s, drawn in drawn_batches:
                now_s += step_s
                scenario.now_s = now_s
                core, expected = run_batch(store, model, [scenario.build(d) for d in drawn], now_s)
                yield drawn, core, expected, store, model
        finally:
            store.close()


@given(batches)
@example(BOUNDARY_STORY)
def test_core_matches_reference_model_and_keeps_invariants(drawn_batches):
    for drawn, core, expected, store, model in play(drawn_batches):
        for i, (c, e) in enumerate(zip(core, expected)):
            assert c == e, f"request {i} of the batch {drawn[i]}: core {c} model {e}"
        for reply in core:                  # --hypothesis-show-statistics: is loyalty reached?
            if reply.points_earned:
                event("points earned" if reply.points_earned > 0 else "points taken back by a return")
            if reply.earn_flags:
                event(f"earn flags {reply.earn_flags}")
            if reply.discount_bp:
                event("discount")
            if reply.result == Result.DECLINED_POINTS_OWED:
                event("redemption blocked: points owed")
            if reply.points_redeemed:
                event("a sale partly paid with points")
            if reply.op == Op.REPLACE_CARD:
                event(f"replacement: {Result(reply.result).name}")
            if reply.op in (Op.CONFIRM_POINTS, Op.RELEASE_POINTS):
                event(f"reservation settled: {Result(reply.result).name}")

        assert core_state(store) == model_state(model)
        with store.env.begin() as txn:
            violations, _ = audit.audit_store(store, txn)
            program = txn.get(records.config_key("G", 1), db=store.db_config)
            if program is not None:           # coalition settlement sums to zero, always
                program = records.unpack_program(program)
                report = settlement.settle(store, txn, program, 0, 2**62)
                assert sum(row.net_minor for row in report.partners) == 0, report
                redeemed = {(records.SYSTEM_OWNER_BASE + r, Slot.RANGE_POINTS_REDEEMED)
                            for r in program.range_ids}
                assert sum(row.points_redeemed for row in report.partners) == \
                    sum(e.amount_minor for e in model.journal if (e.credit_owner, e.credit_slot) in redeemed) - \
                    sum(e.amount_minor for e in model.journal if (e.debit_owner, e.debit_slot) in redeemed)
        assert violations == []
        assert money_transfers(store) == model_transfers(model)


def money_transfers(store):
    """{(currency, payer, payee): net} of the gateway's money settlement of everything so
    far, from the transactions database; its nets sum to zero."""
    lines, after = [], records.transaction_key(0)
    while after is not None:
        rows, after = store.read_transactions(after, 2 ** 62, 1000)
        lines.extend(rows)
    found = {}
    for settled in settle_money(lines):
        assert sum(row.net_minor for row in settled.partners) == 0, settled
        for payer, payee, amount in settled.transfers:
            found[(settled.currency, payer, payee)] = amount
    if found:
        event("money settled between partners")
    return found


def model_transfers(model):
    """The reference model's money flows, netted per pair of partners."""
    nets = {}
    for (currency, payer, payee), amount in model.money_flows.items():
        pair = (currency, *sorted((payer, payee)))
        nets[pair] = nets.get(pair, 0) + (amount if payer < payee else -amount)
    return {(c, a, b) if net > 0 else (c, b, a): abs(net)
            for (c, a, b), net in nets.items() if net}


def test_boundary_story_reaches_every_decline():
    """The explicit example above must reach the declines that matter, or the comparison
    is weak. (The balance limit needs a hundred maximal loads: test_core.py covers it.)"""
    replies, points_expired = [], None
    for _, core, _, store, _ in play(BOUNDARY_STORY):
        replies.extend(core)
        with store.env.begin() as txn:
            points_expired = [e.amount_minor for e in map(
                records.unpack_journal_entry, txn.cursor(db=store.db_journal).iternext(keys=False))
                if e.op == Op.POINTS_EXPIRY]
    assert points_expired == [10]         # the 1-day lot's rest, through the journal
    reached = [r.result for r in replies]
    print("REACHED", [Result(x).name for x in reached[-15:]])
    flagged = [r for r in replies if r.review]
    assert [(r.volume_ml, r.limit_hit - 1) for r in flagged] == \
        [(64_210, records.limit_index(T, Measure.VOLUME)),      # past the soft 60 L a sale
         (100_000, records.limit_index(T, Measure.VOLUME))]     # a pump allowed the day's 100 L
    assert [r.prompts_missing for r in replies if r.result == Result.DECLINED_PROMPT_REQUIRED] == \
        [Prompt.ODOMETER, Prompt.DRIVER]
    R = Result
    assert reached == [
        R.APPROVED, R.DECLINED_UNKNOWN_CARD, R.DECLINED_CARD_EXPIRED, R.DECLINED_CARD_NOT_ACTIVE,
        R.DECLINED_CURRENCY_MISMATCH, R.DECLINED_INSUFFICIENT_FUNDS, R.REJECTED_INVALID_REQUEST,
        R.DECLINED_CARD_ALREADY_ISSUED,
        R.DECLINED_REFUND_EXCEEDS_ORIGINAL, R.DECLINED_CARD_MISMATCH, R.APPROVED,
        R.DECLINED_NOT_REVERSIBLE, R.DECLINED_ORIGINAL_NOT_REFUNDABLE,
        R.APPROVED, R.DECLINED_CARD_BLOCKED, R.APPROVED, R.DECLINED_ALREADY_REVERSED, R.APPROVED,
        R.REJECTED_REQUEST_ID_REUSED, R.APPROVED, R.APPROVED,
        R.DECLINED_CARD_EXPIRED, R.APPROVED, R.DECLINED_WRONG_PIN, R.APPROVED,
        R.APPROVED, R.PARTIALLY_APPROVED, R.DECLINED_INSUFFICIENT_FUNDS,
        R.DECLINED_COMPLETION_EXCEEDS_HOLD, R.APPROVED, R.DECLINED_HOLD_ALREADY_COMPLETED,
        R.APPROVED, R.DECLINED_HOLD_VOIDED, R.DECLINED_HOLD_NOT_FOUND,
        R.APPROVED,
        R.APPROVED, R.APPROVED,
        R.DECLINED_HOLD_EXPIRED,
        R.APPROVED, R.DECLINED_WRONG_PIN, R.DECLINED_WRONG_PIN, R.DECLINED_WRONG_PIN,
        R.DECLINED_CARD_BLOCKED, R.APPROVED, R.APPROVED,
        R.APPROVED, R.DECLINED_INSUFFICIENT_FUNDS, R.DECLINED_BALANCE_NOT_ZERO, R.APPROVED,
        R.APPROVED, R.DECLINED_CARD_CLOSED, R.DECLINED_CARD_CLOSED,
        R.APPROVED, R.DECLINED_BALANCE_LIMIT_EXCEEDED, R.APPROVED,
        R.DECLINED_LOAD_LIMIT_EXCEEDED, R.APPROVED, R.APPROVED, R.APPROVED,
        R.DECLINED_HOLDS_OPEN,
        R.APPROVED, R.APPROVED, R.DECLINED_NO_UNITS_LEFT, R.APPROVED, R.APPROVED,
        R.DECLINED_CARD_EXPIRED,
        R.APPROVED, R.DECLINED_NO_UNITS_LEFT,
        R.APPROVED, R.APPROVED,
        R.DECLINED_NO_UNITS_LEFT,
        # fleet card 6
        R.DECLINED_PROMPT_REQUIRED, R.APPROVED, R.DECLINED_ODOMETER_BACKWARDS,
        R.DECLINED_PRODUCT_NOT_ALLOWED, R.DECLINED_OUTLET_NOT_ALLOWED, R.APPROVED,
        R.REJECTED_UNKNOWN_PRODUCT, R.APPROVED,             # 64.210 L: past the soft 60 L
        R.DECLINED_LIMIT_EXCEEDED, R.DECLINED_LIMIT_EXCEEDED,  # 100 L, 80.00 a day
        R.PARTIALLY_APPROVED,                               # cut to what the day leaves
        R.DECLINED_COMPLETION_EXCEEDS_HOLD, R.DECLINED_PRODUCT_NOT_ALLOWED, R.APPROVED,
        R.REJECTED_INVALID_REQUEST,
        # contract card 7
        R.DECLINED_PROMPT_REQUIRED, R.DECLINED_LIMIT_EXCEEDED, R.APPROVED, R.APPROVED,
        R.APPROVED, R.DECLINED_CREDIT_LIMIT_EXCEEDED, R.APPROVED, R.DECLINED_LIMIT_EXCEEDED,
        R.DECLINED_CONTRACT_CARD, R.DECLINED_CREDIT_LIMIT_EXCEEDED,
        R.DECLINED_TIME_NOT_ALLOWED,
        # points
        R.APPROVED, R.APPROVED, R.APPROVED, R.DECLINED_CARD_EXPIRED,
        R.APPROVED, R.DECLINED_INSUFFICIENT_POINTS,
        R.APPROVED, R.DECLINED_INSUFFICIENT_POINTS,
        R.APPROVED, R.DECLINED_POINTS_PENDING, R.APPROVED,
        R.APPROVED, R.DECLINED_INSUFFICIENT_POINTS, R.DECLINED_RECEIVING_CARD_UNUSABLE,
        R.REJECTED_INVALID_REQUEST, R.APPROVED,
        # earning
        R.DECLINED_UNKNOWN_OUTLET, R.DECLINED_UNKNOWN_PARTNER, R.REJECTED_UNKNOWN_PRODUCT,
        R.REJECTED_INVALID_REQUEST,
        R.DECLINED_UNKNOWN_PROGRAM, R.REJECTED_INVALID_REQUEST, R.APPROVED, R.APPROVED,
        R.APPROVED, R.DECLINED_NOT_IN_PROGRAM, R.APPROVED,
        R.APPROVED, R.APPROVED, R.APPROVED, R.DECLINED_POINTS_OWED, R.DECLINED_POINTS_OWED,
        R.APPROVED, R.DECLINED_POINTS_OWED,
        R.APPROVED, R.APPROVED,
        R.APPROVED, R.APPROVED, R.APPROVED, R.DECLINED_POINTS_HAVE_NO_VALUE,
        R.APPROVED, R.DECLINED_INSUFFICIENT_POINTS, R.DECLINED_COMPLETION_EXCEEDS_HOLD,
        R.APPROVED, R.DECLINED_HOLD_ALREADY_COMPLETED, R.APPROVED,
        R.APPROVED, R.DECLINED_HOLD_VOIDED, R.APPROVED,
        R.DECLINED_HOLD_EXPIRED, R.DECLINED_HOLD_NOT_FOUND,
        R.APPROVED, R.APPROVED, R.DECLINED_HOLDS_OPEN, R.DECLINED_REPLACEMENT_UNUSABLE,
        R.DECLINED_REPLACEMENT_UNUSABLE,
        R.APPROVED, R.DECLINED_CARD_CLOSED, R.APPROVED,
        R.APPROVED, R.REJECTED_INVALID_REQUEST, R.DECLINED_RECEIVING_CARD_UNUSABLE,
        R.DECLINED_CURRENCY_MISMATCH, R.APPROVED, R.APPROVED, R.DECLINED_RECEIVING_CARD_UNUSABLE,
        R.APPROVED, R.DECLINED_CARD_CLOSED,
    ]
    earning = [(r.points_earned, r.discount_minor, r.tier, r.earn_flags, r.balance_minor)
               for r in replies if r.op == Op.LOYALTY_SALE and r.result == R.APPROVED]
    # 50 L at north: 2 points a litre (the best rule), welcome 50, birthday 100; then
    # 29 x1.25 + 25; 38 x1.5 (Gold) pays back 57 of the 189 owed; 133 x1.5 the rest.
    assert earning == [(250, 360, 1, 7, 320), (61, 900, 2, 4, 381), (57, 2_000, 2, 0, -132),
                       (199, 7_000, 2, 0, 67), (12, 500, 2, 0, 18), (0, 5, 2, 0, 8)]
    # 89.00 left to pay in cash earns 8 x1.5; 50 points offered for 0.95, 10 taken.
    assert [(r.points_redeemed, r.points_value_minor, r.approved_minor) for r in replies
            if r.points_redeemed] == [(60, 6_00, 89_00), (10, 95, 0)]
