"""The core against the oracle (tests/oracle.py, written from README and proto): random
batches of money and points requests at the edges (amounts of 1 and of the per-request
maximum, cards filled to the 10^15 cap, member discounts of 0 to 100 %, hold timeouts,
grace windows and point lots' last seconds crossed to the second, closed and replaced
cards, points of two partners redeemed at a third and reversed, blind reversals,
retries; another merchant's terminal naming a merchant's requests, an operator naming
any; PINs set, given right, wrong and not at all). Every answer's result and
amount, every card's value, held value, points and lifetime spend after every batch,
and the coalition's settlement flows must be what the oracle says; the audit must pass.

Checks are explicit (check()), not `assert`, so that this test also checks when run
with PYTHONOPTIMIZE=1 (tests/test_core_optimized.py runs it so)."""
import os

from hypothesis import Phase, example, given, settings, strategies as st

from cardgate.fastcore import ledger, records, reports
from cardgate.fastcore.records import Op
from cardgate.gateway.store.store import Store
from core_driver import KEYS, Core
from oracle import CAP, HOLD_S, OPERATOR, RIGHT_PIN, WRONG_PIN, Oracle

MAX = records.AMOUNT_MINOR_MAX
GRACE_S = 7 * 86400
PARTNERS = (1, 2, 3)                    # outlet of partner p: 100 + p
START_S = 1_790_000_000
CARDS = len(KEYS)
MERCHANT, OTHER_MERCHANT = 0x0A0A0A0A, 0x0B0B0B0B
PIN_VERIFIERS = {RIGHT_PIN: b"\x11" * 16, WRONG_PIN: b"\x22" * 16, None: None}
# Whose request each kind of drawn operation is: a terminal of MERCHANT's, unless said.
MADE_FOR = {"foreign": OTHER_MERCHANT, "operator": OPERATOR, "transfer": OPERATOR}


def check(holds, *what):
    if not holds:
        raise AssertionError(" ".join(str(w) for w in what))


amounts = st.sampled_from([1, 2, 99, 100, 10_000, 123_457, MAX - 1, MAX])
points_amounts = st.sampled_from([1, 3, 50, 1000, MAX])
card = st.integers(0, CARDS - 1)
partner = st.sampled_from(PARTNERS)
ref = st.integers(0, 1000)              # an earlier request of the kind, by position
# The money paths a pump and a till use most come several times, so that they are drawn
# more often than the ones that end a card (deactivate, replace).
completion = st.tuples(st.just("complete"), ref, st.sampled_from([0, 1, 50, "all", "all+1"]),
                       st.sampled_from([False] * 5 + [True]))
purchase = st.tuples(st.just("purchase"), card, amounts, st.booleans())
preauth = st.tuples(st.just("preauth"), card, amounts)
refund = st.tuples(st.just("refund"), ref, st.sampled_from([1, "half", "all", "all+1"]),
                   st.sampled_from([False] * 5 + [True]))
void = st.tuples(st.just("void"), ref)
reverse = st.tuples(st.just("reverse"), ref)
reverse_unseen = st.tuples(st.just("reverse_unseen"), st.integers(0, 3))
retry = st.tuples(st.just("retry"), ref)
transfer = st.tuples(st.just("transfer"), card, card, points_amounts)
pins = st.sampled_from([None, RIGHT_PIN, WRONG_PIN])
operation = st.one_of(
    st.tuples(st.just("load"), card, amounts),
    st.tuples(st.just("fill"), card),
    purchase, purchase, preauth, preauth, completion, completion, completion,
    void, refund, refund, reverse, reverse_unseen,
    st.tuples(st.just("late_original"), st.integers(0, 3), card, amounts),
    retry,
    # Another merchant's terminal naming this merchant's requests; an operator naming any.
    st.tuples(st.just("foreign"), st.one_of(completion, refund, void, reverse, reverse_unseen,
                                            retry, transfer)),
    st.tuples(st.just("operator"), st.one_of(refund, void, reverse, reverse_unseen)),
    st.tuples(st.just("set_pin"), card),
    st.tuples(st.just("pin_purchase"), card, amounts, pins),
    st.tuples(st.just("pin_preauth"), card, amounts, pins),
    st.tuples(st.just("deactivate"), card),
    st.tuples(st.just("replace"), card, card),
    st.tuples(st.just("earn"), card, points_amounts, partner, st.sampled_from([0, HOLD_S])),
    st.tuples(st.just("fill_points"), card, partner),
    st.tuples(st.just("redeem"), card, points_amounts, partner),
    transfer,
    st.tuples(st.just("sale"), card, amounts, st.sampled_from([0, 1, 60, 150, MAX]), partner),
    # Directed edges: a card spent to nothing (late completions then go below zero), and
    # a sale paid with points (of whichever partners issued them) reversed at once.
    st.tuples(st.just("drain"), card), st.tuples(st.just("drain"), card),
    st.tuples(st.just("sale_reversed"), card, amounts, st.sampled_from([60, 150, MAX]), partner),
    st.tuples(st.just("two_issuers"), card, partner, partner, partner),
    st.tuples(st.just("complete_expired"), st.sampled_from(["all", 1])),
    st.tuples(st.just("late_pair"), card, st.sampled_from([100, 10_000])),
)
steps = st.sampled_from([0, 1, HOLD_S - 1, HOLD_S, HOLD_S + 1, HOLD_S + GRACE_S,
                         HOLD_S + GRACE_S + 1, 86400])
discounts = st.sampled_from([0, 1, 250, 5000, 9999, 10000])
batches = st.lists(st.tuples(steps, st.lists(operation, min_size=1, max_size=8)),
                   min_size=1, max_size=6)


class Run:
    """The core (through core_driver) and the oracle, fed the same requests."""

    def __init__(self, path, discount_bp):
        self.core = Core(Store(path, sync=False, map_size_bytes=512 << 20), now_s=START_S)
        self.oracle = Oracle(CARDS, discount_bp, grace_s=GRACE_S)
        self.sent = []                  # (request id, packed, oracle request, kind, merchant)
        self.merchant = MERCHANT        # of the operation being drawn (MADE_FOR)
        self.unseen = {}                # slot -> a request id only ever reversed
        c = self.core
        setup = [c.rq(Op.CREATE_RANGE, range_id=1, currency="EUR", iin_prefix=627700,
                      iin_digits=6, pan_length=16, late_grace_s=GRACE_S),
                 *[c.rq(Op.ISSUE_CARD, n, range_id=1, expiry_yyyymm=209912, pan_first6=627700,
                        pan_last4=1000 + n, pan_length=16) for n in range(CARDS)],
                 c.rq(Op.SET_PROGRAM, payload=records.pack_program(
                     1, records.ExpiryKind.NEVER, range_ids=[1], point_value_millis=1000,
                     discounts=[records.DiscountStep(0, discount_bp)] if discount_bp else ())),
                 *[c.rq(Op.DEFINE_PARTNER, partner_id=p, partner_name=f"partner {p}")
                   for p in PARTNERS],
                 *[c.rq(Op.DEFINE_OUTLET, outlet_code=100 + p,
                        payload=records.pack_outlet(100 + p, 0, f"outlet {p}", p))
                   for p in PARTNERS]]
        check({r.result for r in c.apply(*setup)} == {records.Result.APPROVED}, "set-up")

    def rq(self, op, card=None, **fields):
        """A packed request made for the merchant of the operation being drawn."""
        return self.core.rq(op, card, merchant_code=self.merchant, **fields)

    def earlier(self, kinds, position):
        found = [s for s in self.sent if s[3] in kinds]
        return found[position % len(found)] if found else None

    def requests(self, op):
        """[(request id, packed, oracle request, kind)] of one drawn operation."""
        c, kind = self.core, op[0]
        new = c.new_id
        if kind == "load":
            rid = new()
            return [(rid, self.rq(Op.LOAD, op[1], request_id=rid, currency="EUR", amount_minor=op[2]),
                     ("load", op[1], op[2]), "load")]
        if kind == "fill":                      # loads of the maximum until the card is full
            return [x for _ in range(CAP // MAX + 1) for x in self.requests(("load", op[1], MAX))]
        if kind == "purchase":
            rid = new()
            return [(rid, self.rq(Op.PURCHASE, op[1], request_id=rid, currency="EUR",
                               amount_minor=op[2], partial_ok=op[3]),
                     ("purchase", op[1], op[2], op[3]), "sale")]
        if kind == "preauth":
            rid = new()
            return [(rid, self.rq(Op.PREAUTH, op[1], request_id=rid, currency="EUR",
                               amount_minor=op[2]), ("preauth", op[1], op[2]), "hold")]
        if kind in ("complete", "refund"):      # the hold's or sale's card, or the next one
            found = self.earlier(("hold",) if kind == "complete" else ("sale",), op[1])
            if found is None:
                return []
            whole = found[2][2] if kind == "complete" else \
                self.oracle.answers.get(found[0], (None, (0, 0)))[1][1]
            amount = portion(whole, op[2])
            card_of = (found[2][1] + op[3]) % CARDS
            if amount > MAX:
                return []
            rid = new()
            return [(rid, self.rq(Op.COMPLETE if kind == "complete" else Op.REFUND, card_of,
                               request_id=rid, ref_request_id=found[0], currency="EUR",
                               amount_minor=amount),
                     (kind, card_of, found[0], amount), "sale" if kind == "complete" else "refund")]
        if kind in ("void", "reverse"):         # a request naming only an earlier one
            original = self.earlier(("hold",) if kind == "void" else
                                    ("load", "sale", "hold", "refund", "other", "points"), op[1])
            if original is None:
                return []
            rid = new()
            return [(rid, self.rq(Op.VOID if kind == "void" else Op.REVERSAL, request_id=rid,
                               ref_request_id=original[0]), (kind, original[0]), "other")]
        if kind == "reverse_unseen":
            unseen = self.unseen.setdefault(op[1], new())
            rid = new()
            return [(rid, self.rq(Op.REVERSAL, request_id=rid, ref_request_id=unseen),
                     ("reverse", unseen), "other")]
        if kind == "late_original":             # the original of a blind reversal arrives
            rid = self.unseen.pop(op[1], None) or new()
            return [(rid, self.rq(Op.LOAD, op[2], request_id=rid, currency="EUR",
                               amount_minor=op[3]), ("load", op[2], op[3]), "load")]
        if kind == "retry":
            if not self.sent:
                return []
            rid, packed, request, kind_of, merchant = self.sent[op[1] % len(self.sent)]
            if merchant != self.merchant:       # the same request, sent for another merchant
                packed = made_for(packed, self.merchant)
            return [(rid, packed, request, kind_of)]
        if kind in ("foreign", "operator"):     # MADE_FOR says for whom
            return self.requests(op[1])
        if kind == "set_pin":
            rid = new()
            return [(rid, self.rq(Op.SET_PIN, op[1], request_id=rid, pin_verifier=PIN_VERIFIERS[RIGHT_PIN]),
                     ("set_pin", op[1]), "other")]
        if kind in ("pin_purchase", "pin_preauth"):
            rid = new()
            purchase = kind == "pin_purchase"
            return [(rid, self.rq(Op.PURCHASE if purchase else Op.PREAUTH, op[1], request_id=rid,
                                  currency="EUR", amount_minor=op[2], pin_verifier=PIN_VERIFIERS[op[3]]),
                     ("purchase", op[1], op[2], False, op[3]) if purchase else
                     ("preauth", op[1], op[2], op[3]), "sale" if purchase else "hold")]
        if kind == "deactivate":
            rid = new()
            return [(rid, self.rq(Op.DEACTIVATE, op[1], request_id=rid, close_disposition=1),
                     ("deactivate", op[1]), "other")]
        if kind == "replace":
            if op[1] == op[2]:
                return []
            rid = new()
            return [(rid, self.rq(Op.REPLACE_CARD, op[1], request_id=rid, payload=KEYS[op[2]]),
                     ("replace", op[1], op[2]), "other")]
        if kind == "earn":                      # usable for ever, or for HOLD_S seconds more
            rid = new()
            valid_until_s = c.now_s + op[4] if op[4] else 0
            return [(rid, self.rq(Op.EARN_POINTS, op[1], request_id=rid,
                               currency=records.POINTS_ASSET, amount_minor=op[2],
                               outlet_code=100 + op[3], valid_until_s=valid_until_s),
                     ("earn", op[1], op[2], op[3], valid_until_s), "points")]
        if kind == "fill_points":
            return [x for _ in range(CAP // MAX + 1)
                    for x in self.requests(("earn", op[1], MAX, op[2], 0))]
        if kind == "redeem":
            rid = new()
            return [(rid, self.rq(Op.REDEEM_POINTS, op[1], request_id=rid,
                               currency=records.POINTS_ASSET, amount_minor=op[2],
                               outlet_code=100 + op[3]), ("redeem", op[1], op[2], op[3]), "points")]
        if kind == "transfer":
            if op[1] == op[2]:
                return []
            rid = new()
            return [(rid, self.rq(Op.TRANSFER_POINTS, op[1], request_id=rid,
                               currency=records.POINTS_ASSET, amount_minor=op[3],
                               payload=KEYS[op[2]]), ("transfer", op[1], op[2], op[3]), "points")]
        if kind == "drain":                     # all the card has, by a partial purchase
            return self.requests(("purchase", op[1], MAX, True))
        if kind == "two_issuers":              # points of two partners paid at a third, reversed
            return [*self.requests(("earn", op[1], 50, op[2], 0)),
                    *self.requests(("earn", op[1], 100, op[3], 0)),
                    *self.requests(("sale_reversed", op[1], 1_000, 120, op[4]))]
        if kind == "late_pair":                 # two holds on one card
            return [*self.requests(("preauth", op[1], op[2])),
                    *self.requests(("preauth", op[1], op[2] // 2))]
        if kind == "complete_expired":          # every hold time released, completed late,
            expired = [(i, h) for i, h in self.oracle.holds.items() if h.state == "expired"]
            return [*(x for card_of in sorted({h.card for _, h in expired})   # cards spent first
                      for x in self.requests(("drain", card_of))),
                    *(x for hold_id, hold in expired
                      for x in self.completion(hold_id, hold.card, portion(hold.amount, op[1])))]
        if kind == "sale_reversed":
            sale = self.requests(("sale",) + op[1:])
            reversal = c.new_id()
            return sale + [(reversal, self.rq(Op.REVERSAL, request_id=reversal,
                                           ref_request_id=sale[0][0]),
                            ("reverse", sale[0][0]), "other")]
        if kind == "sale":
            rid = new()
            return [(rid, self.rq(Op.LOYALTY_SALE, op[1], request_id=rid, currency="EUR",
                               amount_minor=op[2], points_tendered=op[3],
                               payment_method=records.PaymentMethod.CASH, outlet_code=100 + op[4]),
                     ("sale", op[1], op[2], op[3], op[4]), "sale")]
        raise ValueError(kind)

    def completion(self, hold_id, card_of, dispensed):
        rid = self.core.new_id()
        return [(rid, self.rq(Op.COMPLETE, card_of, request_id=rid, ref_request_id=hold_id,
                                   currency="EUR", amount_minor=dispensed),
                 ("complete", card_of, hold_id, dispensed), "sale")]

    def batch(self, step_s, ops):
        self.core.now_s += step_s
        self.oracle.tick(self.core.now_s)
        sent = []
        for op in ops:
            self.merchant = MADE_FOR.get(op[0], MERCHANT)
            sent += [(*r, self.merchant) for r in self.requests(op)]
        replies = self.core.apply(*(packed for _, packed, _, _, _ in sent))
        for (rid, packed, request, kind, merchant), reply in zip(sent, replies):
            expected = self.oracle.apply(rid, request, self.core.now_s, merchant)
            seen = ("id reused", 0) if reply.result == records.Result.REJECTED_REQUEST_ID_REUSED \
                else (reply.result, reply.approved_minor)
            check(seen == expected, request, "for merchant", merchant, "core:",
                  getattr(seen[0], "name", seen[0]), seen[1], "oracle:",
                  getattr(expected[0], "name", expected[0]), expected[1])
            self.sent.append((rid, packed, request, kind, merchant))
        self.compare_cards()

    def compare_cards(self):
        store = self.core.store
        with store.env.begin() as txn:
            by_issuer = points_by_issuer(txn, store)
            for n in range(CARDS):
                model = self.oracle.cards[n]
                _, reply = ledger.card_view(txn, store.dbs, KEYS[n])
                described = records.unpack_reply(reply)
                member = txn.get(records.member_key(n + 1), db=store.db_book)
                spend = records.unpack_member(member).lifetime_spend_minor if member else 0
                seen = (described.balance_minor - described.pending_minor, described.pending_minor,
                        store.read_points(n + 1), spend, by_issuer.get(n + 1, {}))
                wanted = (model.value, self.oracle.held(n), model.points, model.lifetime_spend,
                          model.points_by_issuer())
                check(seen == wanted, f"card {n}: core (value, held, points, lifetime spend, "
                      "points by issuer)", seen, "oracle", wanted)

    def finish(self):
        store = self.core.store
        with store.env.begin() as txn:
            _, _, flows = reports.period_flows(txn, store.db_journal, 1, 2 ** 63,
                                               {records.SYSTEM_OWNER_BASE + 1})
        expected = {pair: n for pair, n in self.oracle.flows.items() if n}
        check({pair: n for pair, n in flows.items() if n} == expected,
              "settlement flows: core", flows, "oracle", expected)
        violations, _ = self.core.audit()
        check(violations == [], "audit:", violations)


def made_for(packed: bytes, merchant: int) -> bytes:
    """A packed request as another merchant would send it (merchant_code is the last
    field of the request, core_request.h)."""
    at = records.REQUEST_SIZE - 4
    return packed[:at] + merchant.to_bytes(4, "little") + packed[records.REQUEST_SIZE:]


def portion(whole, how):
    """A drawn part of an earlier amount: a number, half, all, or one more than all."""
    return {"half": max(whole // 2, 1), "all": max(whole, 1), "all+1": whole + 1}.get(how, how)


def points_by_issuer(txn, store):
    """{card id: {issuing partner: points}} of the open point lots, in one pass."""
    found = {}
    for _, value in txn.cursor(db=store.db_point_lots):
        lot = records.unpack_lot(value)
        if lot.status == records.LotState.OPEN and lot.quantity_left:
            card = found.setdefault(lot.card_id, {})
            card[lot.partner_id] = card.get(lot.partner_id, 0) + lot.quantity_left
    return found


@settings(max_examples=int(os.environ.get("ORACLE_EXAMPLES", 0)) or settings().max_examples,
          # ORACLE_NO_SHRINK: report the first failure as found (planting bugs, quickly)
          phases=[p for p in Phase if not (p == Phase.shrink and os.environ.get("ORACLE_NO_SHRINK"))])
@given(discounts, batches)
# Edges every run reaches, whatever is drawn: late completions on a card spent to nothing
# (the second goes below minus its hold), points of two partners paid at a third and
# reversed, a card's points and value filled to the cap and one more, a full discount.
@example(250, [(0, [("late_pair", 0, 10_000)]), (HOLD_S, [("complete_expired", "all")])])
@example(0, [(0, [("two_issuers", 1, 1, 2, 3)]), (1, [("redeem", 1, 150, 3)])])
@example(0, [(0, [("fill_points", 2, 1), ("earn", 2, 1, 2, 0), ("fill", 3), ("load", 3, 1)])])
@example(10_000, [(0, [("purchase", 0, 5_000, False), ("sale", 1, 5_000, 60, 2)]),
                  (1, [("refund", 0, "all", False), ("reverse", 0)])])
# A purchase reversed after its card was paid out, and after it was replaced (the setup's
# three loads come first among the requests a reversal may name: 3 is the purchase).
@example(0, [(0, [("purchase", 0, 1_000, False), ("deactivate", 0)]), (1, [("reverse", 3)])])
@example(0, [(0, [("purchase", 1, 1_000, False), ("replace", 1, 3)]), (1, [("reverse", 3)])])
def test_core_answers_as_the_oracle_says(tmp_path_factory, discount_bp, drawn):
    run = Run(tmp_path_factory.mktemp("oracle"), discount_bp)
    try:
        run.batch(0, [("load", n, 1_000_000) for n in range(CARDS - 1)])   # the last: unused
        for step_s, ops in drawn:
            run.batch(step_s, ops)
        run.finish()
    finally:
        run.core.store.close()
