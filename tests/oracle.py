"""An oracle of what the README and the proto promise about money and points, written
from those statements and not from the core: cards of one range, their value and holds,
loyalty points as lots of the partner that issued them, a member discount at every sale,
and the answers each request must get. It knows nothing of accounts, journal entries or
records; it says what a client must see (the result, the amount that took effect, the
balances) and who owes whom in a coalition's settlement.

The rules, each as the documentation states it:
* A card is issued, becomes active with its first load or points, may be blocked, and is
  closed for good (paid out, or replaced: its value and points go to the new card). A
  closed card takes no value on or off; a blocked or not yet active card pays nothing.
* A load is declined past the card's balance limit (what it holds, held value included)
  or past the range's daily load limit.
* A purchase is charged the price less the member discount (the level lifetime spend
  reached before it); with partial approval the card pays what it has; a discount of
  100 % makes it free. Lifetime spend counts the price.
* A pre-authorization holds value; completion charges what was dispensed less the
  discount and releases the rest; a void or a reversal releases all; the hold ends by
  itself when its timeout comes (at that second). A completion after that, within the
  range's grace window, is a forced capture: taken even below zero, but never lower than
  minus the held amount.
* A refund gives back part of a purchase, never more than it charged in all. A reversal
  undoes a load, purchase, refund, pre-authorization or sale once; of an id never seen it
  leaves a tombstone, and the original arriving later is declined.
* Points: earned as a lot of the partner where they were earned, usable through its last
  second and expired after it; spent earliest-expiring first, lots ending together in
  the order of their ids (a request's own id; its further lots: a digest of it and the
  part); a transfer arrives as one lot per issuer, each ending with the earliest of what
  was taken; a reversed sale gives each issuer's points back as a lot of that issuer,
  never ending; a card holds at most 10^15 points.
* Every request id answers the same when retried, to the merchant that sent it; another
  merchant reusing it gets no answer (ALREADY_EXISTS).
* Between merchants: a reversal, refund, void or completion acts only on its own
  merchant's request; another's is declined DECLINED_NOT_OWN_REQUEST and nothing changes.
  An operator (a request made for no merchant) acts on any. A blind reversal cancels only
  its own merchant's late request.
* PINs: a card with a PIN set is declined DECLINED_PIN_REQUIRED at a purchase or a
  pre-authorization without it (the range's policy, unset: required); a wrong PIN is
  declined DECLINED_WRONG_PIN, and three in a row block the card; a right one resets the
  count. Points move between cards at a terminal only with the giving card's PIN.
"""
import dataclasses
import hashlib
import os

from cardgate.fastcore import records
from cardgate.fastcore.records import Result

CAP = records.BALANCE_MINOR_MAX
HOLD_S = records.HOLD_TIMEOUT_S_DEFAULT
OPERATOR = 0                            # the merchant of a request made for none
PIN_TRIES = records.PIN_TRIES_MAX_DEFAULT
RIGHT_PIN, WRONG_PIN = "right", "wrong" 
PLANTED = bool(os.environ.get("ORACLE_PLANT"))   # tests/test_core_optimized.py only


class Declined(Exception):
    """A request declined before it changed anything: (result, 0) is its answer."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


@dataclasses.dataclass
class Card:
    status: str = "issued"                  # issued, active, blocked, closed
    value: int = 0                          # its own value (may be below 0 after a forced capture)
    lots: list = dataclasses.field(default_factory=list)     # Lot
    lifetime_spend: int = 0
    load_day: int = -1
    loaded_today: int = 0
    pin: bool = False                       # a PIN is set
    pin_failures: int = 0

    @property
    def points(self):
        return sum(lot.points for lot in self.lots)

    def points_by_issuer(self):
        found = {}
        for lot in self.lots:
            if lot.points:
                found[lot.issuer] = found.get(lot.issuer, 0) + lot.points
        return found


@dataclasses.dataclass
class Lot:
    issuer: int
    points: int
    valid_until_s: int                      # the last second it is usable (0: never)
    lot_id: bytes

    def order(self):
        return (self.valid_until_s or records.LOT_NEVER, self.lot_id)


def lot_id(request_id: bytes, part: int) -> bytes:
    return request_id if part == 0 else \
        hashlib.sha256(b"lot" + request_id + bytes([part])).digest()[:16]


@dataclasses.dataclass
class Hold:
    card: int
    amount: int
    expires_s: int
    state: str = "open"                     # open, completed, voided, expired


@dataclasses.dataclass
class Sale:
    """An approved purchase or loyalty sale, for refunds, reversals and settlement."""
    kind: str                               # purchase, sale
    card: int
    charged: int
    discount: int
    refunded: int = 0
    redeemed: list = dataclasses.field(default_factory=list)  # [(issuer, points)]
    redeemer: int = 0


class Oracle:
    def __init__(self, cards, discount_bp, balance_max=CAP, load_per_day_max=0,
                 grace_s=records.LATE_GRACE_S_DEFAULT):
        self.cards = [Card() for _ in range(cards)]
        self.discount_bp = discount_bp          # one level, from the first sale
        self.balance_max = balance_max
        self.load_per_day_max = load_per_day_max
        self.grace_s = grace_s
        self.holds = {}
        self.sales = {}
        self.refunds = {}                       # refund id -> the sale it gives back
        self.answers = {}                       # request id -> ((request, merchant), answer)
        self.merchants = {}                     # request id -> the merchant it was made for
        self.merchant = OPERATOR                # the merchant of the request being applied
        self.tombstones = {}                    # id reversed unseen -> the reverser's merchant
        self.reversed = set()                   # ids of requests undone by a reversal
        self.flows = {}                         # (issuer, redeemer) -> points

    # ---- time ---------------------------------------------------------------------

    def tick(self, now_s):
        """Holds whose timeout has come are released, at the start of a batch."""
        for hold in self.holds.values():
            if hold.state == "open" and hold.expires_s <= now_s:
                hold.state = "expired"
                self.cards[hold.card].value += hold.amount
        for card in self.cards:                 # lots past their last second
            card.lots = [lot for lot in card.lots
                         if not lot.valid_until_s or lot.valid_until_s >= now_s]

    # ---- one request ----------------------------------------------------------------

    def apply(self, request_id, request, now_s, merchant=OPERATOR):
        """(result, approved) of a request made for `merchant`, as the client must see it."""
        if request_id in self.answers:
            first, answer = self.answers[request_id]
            return answer if first == (request, merchant) else ("id reused", 0)
        reverser = self.tombstones.pop(request_id, None)
        if reverser in (OPERATOR, merchant):        # reversed before it arrived
            answer = (Result.DECLINED_ALREADY_REVERSED, 0)
            self.reversed.add(request_id)
        else:                                       # (another merchant's blind reversal: none)
            self.merchant = merchant
            try:
                answer = getattr(self, request[0])(request_id, now_s, *request[1:])
            except Declined as declined:
                answer = (declined.result, 0)
        self.answers[request_id] = ((request, merchant), answer)
        self.merchants[request_id] = merchant
        return answer

    def must_be_own(self, original_id):
        """A request naming an earlier one: the caller's own merchant's, or an operator's."""
        if self.merchant != OPERATOR and self.merchants.get(original_id) != self.merchant:
            raise Declined(Result.DECLINED_NOT_OWN_REQUEST)

    def pin_checked(self, card, pin):
        """The card's PIN under the default policy (required): none given to a card that
        has one, or a wrong one (counted; three in a row block), declines."""
        c = self.cards[card]
        if not c.pin:
            return
        if pin is None:
            raise Declined(Result.DECLINED_PIN_REQUIRED)
        if pin == RIGHT_PIN:
            c.pin_failures = 0
            return
        c.pin_failures += 1
        if c.pin_failures >= PIN_TRIES:
            c.status = "blocked"
        raise Declined(Result.DECLINED_WRONG_PIN)

    def set_pin(self, rid, now_s, card):
        c = self.cards[card]
        if c.status == "closed":
            return Result.DECLINED_CARD_CLOSED, 0
        c.pin, c.pin_failures = True, 0
        return Result.APPROVED, 0

    def must_be_usable(self, card, issued_ok=False):
        bad = self.usable(card, issued_ok)
        if bad:
            raise Declined(bad)

    def usable(self, card, issued_ok=False):
        c = self.cards[card]
        if c.status == "closed":
            return Result.DECLINED_CARD_CLOSED
        if c.status == "blocked":
            return Result.DECLINED_CARD_BLOCKED
        if c.status == "issued" and not issued_ok:
            return Result.DECLINED_CARD_NOT_ACTIVE
        return None

    def held(self, card):
        return sum(h.amount for h in self.holds.values() if h.card == card and h.state == "open")

    def activate(self, card):
        if self.cards[card].status == "issued":
            self.cards[card].status = "active"

    def discount_of(self, card, price):
        bp = self.discount_bp if self.discount_bp is not None else 0
        return price * bp // 10000

    # ---- money ------------------------------------------------------------------------

    def load(self, rid, now_s, card, amount):
        if PLANTED:                             # a wrong oracle, to show the test can fail
            return Result.DECLINED_CARD_BLOCKED, 0
        self.must_be_usable(card, issued_ok=True)
        c = self.cards[card]
        if c.value + self.held(card) + amount > self.balance_max:
            return Result.DECLINED_BALANCE_LIMIT_EXCEEDED, 0
        day = now_s // 86400
        today = c.loaded_today if c.load_day == day else 0
        if self.load_per_day_max and today + amount > self.load_per_day_max:
            return Result.DECLINED_LOAD_LIMIT_EXCEEDED, 0
        c.load_day, c.loaded_today = day, today + amount
        c.value += amount
        self.activate(card)
        return Result.APPROVED, amount

    def purchase(self, rid, now_s, card, price, partial, pin=None):
        self.must_be_usable(card)
        self.pin_checked(card, pin)
        c = self.cards[card]
        discount = self.discount_of(card, price)
        due = price - discount
        if due == 0:
            charged = 0
        elif c.value >= due:
            charged = due
        elif partial and c.value > 0:
            charged = c.value
        else:
            return Result.DECLINED_INSUFFICIENT_FUNDS, 0
        c.value -= charged
        c.lifetime_spend += charged + discount
        self.sales[rid] = Sale("purchase", card, charged, discount)
        return (Result.APPROVED if charged == due else Result.PARTIALLY_APPROVED), charged

    def preauth(self, rid, now_s, card, amount, pin=None):
        self.must_be_usable(card)
        self.pin_checked(card, pin)
        c = self.cards[card]
        if c.value < amount:
            return Result.DECLINED_INSUFFICIENT_FUNDS, 0
        c.value -= amount
        self.holds[rid] = Hold(card, amount, now_s + HOLD_S)
        return Result.APPROVED, amount

    def complete(self, rid, now_s, card, hold_id, dispensed):
        hold = self.holds.get(hold_id)
        if hold is None:
            return Result.DECLINED_HOLD_NOT_FOUND, 0
        self.must_be_own(hold_id)
        if hold.card != card:
            return Result.DECLINED_CARD_MISMATCH, 0
        late = hold.state == "expired" and dispensed > 0 and now_s <= hold.expires_s + self.grace_s
        if hold.state != "open" and not late:
            return {"completed": Result.DECLINED_HOLD_ALREADY_COMPLETED,
                    "voided": Result.DECLINED_HOLD_VOIDED}.get(hold.state,
                                                               Result.DECLINED_HOLD_EXPIRED), 0
        if dispensed > hold.amount:
            return Result.DECLINED_COMPLETION_EXCEEDS_HOLD, 0
        c = self.cards[card]
        discount = self.discount_of(card, dispensed) if dispensed else 0
        charged = dispensed - discount
        if late:
            if c.status == "closed":
                return Result.DECLINED_CARD_CLOSED, 0
            if c.value - charged < -hold.amount:
                return Result.DECLINED_INSUFFICIENT_FUNDS, 0
            c.value -= charged
        else:
            c.value += hold.amount - charged
        hold.state = "completed"
        c.lifetime_spend += charged + discount if dispensed else 0
        self.sales[rid] = Sale("purchase", card, charged, discount)
        return Result.APPROVED, charged

    def void(self, rid, now_s, hold_id):
        hold = self.holds.get(hold_id)
        if hold is None:
            return Result.DECLINED_HOLD_NOT_FOUND, 0
        self.must_be_own(hold_id)
        if hold.state != "open":
            return {"completed": Result.DECLINED_HOLD_ALREADY_COMPLETED,
                    "voided": Result.DECLINED_HOLD_VOIDED}.get(hold.state,
                                                               Result.DECLINED_HOLD_EXPIRED), 0
        hold.state = "voided"
        self.cards[hold.card].value += hold.amount
        return Result.APPROVED, hold.amount

    def refund(self, rid, now_s, card, sale_id, amount):
        self.must_be_usable(card)
        if sale_id in self.answers:
            self.must_be_own(sale_id)
        sale = self.sales.get(sale_id)
        if sale is None:
            return (Result.DECLINED_ORIGINAL_NOT_FOUND if sale_id not in self.answers
                    else Result.DECLINED_ORIGINAL_NOT_REFUNDABLE), 0
        if sale_id in self.reversed:
            return Result.DECLINED_ALREADY_REVERSED, 0
        if sale.card != card:
            return Result.DECLINED_CARD_MISMATCH, 0
        if sale.refunded + amount > sale.charged:
            return Result.DECLINED_REFUND_EXCEEDS_ORIGINAL, 0
        c = self.cards[card]
        money = sale.kind == "purchase"         # a sale paid otherwise gives back no value
        if money and c.value + self.held(card) + amount > CAP:
            return Result.DECLINED_BALANCE_LIMIT_EXCEEDED, 0
        c.lifetime_spend -= amount + share(sale.discount, sale.charged, sale.refunded,
                                           sale.refunded + amount)
        c.lifetime_spend = max(c.lifetime_spend, 0)
        sale.refunded += amount
        if money:
            c.value += amount
        self.refunds[rid] = sale_id
        return Result.APPROVED, amount

    def reverse(self, rid, now_s, original):
        if original not in self.answers:
            self.tombstones.setdefault(original, self.merchant)
            return Result.APPROVED, 0
        self.must_be_own(original)
        (request, _), (result, approved) = self.answers[original]
        kind = request[0]
        if kind not in ("load", "purchase", "refund", "preauth", "sale"):
            return Result.DECLINED_NOT_REVERSIBLE, 0
        if original in self.reversed:
            return Result.DECLINED_ALREADY_REVERSED, 0
        if result not in (Result.APPROVED, Result.PARTIALLY_APPROVED):
            self.reversed.add(original)         # nothing took effect: nothing to undo
            return Result.APPROVED, 0
        if kind == "preauth":
            hold = self.holds[original]
            if hold.state != "open":
                return Result.DECLINED_NOT_REVERSIBLE, 0
            hold.state = "voided"
            self.cards[hold.card].value += hold.amount
            self.reversed.add(original)
            return Result.APPROVED, hold.amount
        if kind in ("purchase", "sale") and self.sales[original].refunded:
            return Result.DECLINED_NOT_REVERSIBLE, 0     # its refunds are reversed first
        if kind == "refund" and self.sales[self.refunds[original]].kind == "sale":
            return Result.DECLINED_NOT_REVERSIBLE, 0     # no money of ours moved
        card = request[1]
        c = self.cards[card]
        if c.status == "closed":
            return Result.DECLINED_CARD_CLOSED, 0
        if kind == "purchase":
            sale = self.sales[original]
            if c.value + self.held(card) + sale.charged > CAP:
                return Result.DECLINED_BALANCE_LIMIT_EXCEEDED, 0
            c.value += sale.charged
            c.lifetime_spend = max(0, c.lifetime_spend - sale.charged - sale.discount)
        elif kind == "sale":
            sale = self.sales[original]
            c.lifetime_spend = max(0, c.lifetime_spend - sale.charged - sale.discount)
            for part, (issuer, points) in enumerate(sale.redeemed):   # each issuer's back
                c.lots.append(Lot(issuer, points, 0, lot_id(rid, part)))
            self.count_flows(sale.redeemed, sale.redeemer, -1)
        else:                                             # a load, or a refund
            amount = approved
            if c.value < amount:
                return Result.DECLINED_INSUFFICIENT_FUNDS, 0
            c.value -= amount
            if kind == "refund":
                sale = self.sales[self.refunds[original]]
                c.lifetime_spend += amount + share(sale.discount, sale.charged,
                                                   sale.refunded - amount, sale.refunded)
                sale.refunded -= amount
        self.reversed.add(original)
        return Result.APPROVED, approved

    def deactivate(self, rid, now_s, card):
        c = self.cards[card]
        if c.status == "closed":
            return Result.DECLINED_CARD_CLOSED, 0
        if self.held(card):
            return Result.DECLINED_HOLDS_OPEN, 0
        if c.value < 0:
            return Result.DECLINED_INSUFFICIENT_FUNDS, 0
        paid_out, c.value, c.status = c.value, 0, "closed"
        return Result.APPROVED, paid_out

    def replace(self, rid, now_s, card, new):
        c, n = self.cards[card], self.cards[new]
        if c.status == "closed":
            return Result.DECLINED_CARD_CLOSED, 0
        if new == card or n.status != "issued":
            return Result.DECLINED_REPLACEMENT_UNUSABLE, 0
        if self.held(card):
            return Result.DECLINED_HOLDS_OPEN, 0
        if c.value < 0:
            return Result.DECLINED_INSUFFICIENT_FUNDS, 0
        moved = max(c.value, 0)
        n.value, c.value = moved, 0
        n.lots, c.lots = c.lots, []
        n.lifetime_spend = c.lifetime_spend     # the standing moves; the closed card's stays
        n.load_day, n.loaded_today = c.load_day, c.loaded_today
        n.status = "active" if c.status == "active" else c.status
        c.status = "closed"
        return Result.APPROVED, moved

    # ---- points -------------------------------------------------------------------------

    def earn(self, rid, now_s, card, points, partner, valid_until_s):
        self.must_be_usable(card, issued_ok=True)
        c = self.cards[card]
        if c.points + points > CAP:
            return Result.DECLINED_POINTS_LIMIT_EXCEEDED, 0
        c.lots.append(Lot(partner, points, valid_until_s, rid))
        self.activate(card)
        return Result.APPROVED, points

    def take(self, card, points):
        """([(issuer, points)] taken earliest-ending first, merged by runs of one
        issuer; the last second of the first lot taken)."""
        taken, lots = [], sorted(self.cards[card].lots, key=Lot.order)
        earliest = lots[0].valid_until_s if lots else 0
        while points:
            lot = lots[0]
            used = min(lot.points, points)
            points -= used
            lot.points -= used
            if not lot.points:
                lots.pop(0)
            if taken and taken[-1][0] == lot.issuer:
                taken[-1] = (lot.issuer, taken[-1][1] + used)
            else:
                taken.append((lot.issuer, used))
        self.cards[card].lots = lots
        return taken, earliest

    def redeem(self, rid, now_s, card, points, partner):
        self.must_be_usable(card)
        if self.cards[card].points < points:
            return Result.DECLINED_INSUFFICIENT_POINTS, 0
        self.count_flows(self.take(card, points)[0], partner)
        return Result.APPROVED, points

    def count_flows(self, redeemed, redeemer, sign=1):
        """Points of one partner redeemed at another: the issuer owes the redeemer."""
        for issuer, used in redeemed:
            if issuer != redeemer:
                self.flows[(issuer, redeemer)] = self.flows.get((issuer, redeemer), 0) + sign * used

    def transfer(self, rid, now_s, card, to, points):
        self.must_be_usable(card)
        if self.merchant != OPERATOR:           # at a terminal: the giving card's PIN, none sent
            raise Declined(Result.DECLINED_PIN_REQUIRED)
        if to == card or self.usable(to, issued_ok=True):
            return Result.DECLINED_RECEIVING_CARD_UNUSABLE, 0
        if self.cards[card].points < points:
            return Result.DECLINED_INSUFFICIENT_POINTS, 0
        if self.cards[to].points + points > CAP:
            return Result.DECLINED_POINTS_LIMIT_EXCEEDED, 0
        taken, earliest = self.take(card, points)
        by_issuer = {}
        for issuer, moved in taken:
            by_issuer[issuer] = by_issuer.get(issuer, 0) + moved
        for part, (issuer, moved) in enumerate(by_issuer.items()):
            self.cards[to].lots.append(Lot(issuer, moved, earliest, lot_id(rid, part)))
        self.activate(to)
        return Result.APPROVED, points

    def sale(self, rid, now_s, card, price, points, partner):
        """RecordSale: paid otherwise; points (worth one minor unit each) may pay part."""
        self.must_be_usable(card, issued_ok=True)
        c = self.cards[card]
        discount = self.discount_of(card, price)
        payable = price - discount
        points = min(points, payable)
        if points and c.points < points:
            return Result.DECLINED_INSUFFICIENT_POINTS, 0
        redeemed = self.take(card, points)[0] if points else []
        self.count_flows(redeemed, partner)
        self.activate(card)
        c.lifetime_spend += payable - points + discount
        self.sales[rid] = Sale("sale", card, payable - points, discount, redeemed=redeemed,
                               redeemer=partner)
        return Result.APPROVED, payable - points


def share(whole, charged, before, after):
    """A return's share of a sale's `whole`, rounded so that all of it returns all."""
    if whole <= 0 or charged <= 0:
        return 0
    return whole * after // charged - whole * before // charged
