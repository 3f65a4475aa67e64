"""Pure-Python reference model of fastcore's ledger, for tests only.

Same semantics as fastcore/ledger.pyx, written for clarity instead of speed: dicts
instead of LMDB, Python objects instead of packed structs. Property tests feed both
the same packed requests and compare every reply, balance and journal entry.
"""
import collections
import copy
import dataclasses
import functools

from cardgate.fastcore import records
from cardgate.fastcore.records import CardStatus, Op, PaymentMethod, PinPolicy, Result, Slot

from reference_fleet import Decline, FleetRules
from reference_loyalty import LoyaltyRules, lot_time, part_lot_id

AMOUNT_MINOR_MAX = records.AMOUNT_MINOR_MAX
BALANCE_MINOR_MAX = records.BALANCE_MINOR_MAX
SYSTEM = records.SYSTEM_OWNER_BASE
FLAG_REVERSED = records.REQUEST_FLAG_REVERSED
FLAG_TOMBSTONE = records.REQUEST_FLAG_TOMBSTONE


def approval_code(request_id: bytes, seq: int) -> int:
    h = 1469598103934665603
    for b in request_id:
        h = ((h ^ b) * 1099511628211) & 0xFFFF_FFFF_FFFF_FFFF
    return ((h + seq) & 0xFFFF_FFFF_FFFF_FFFF) % 1_000_000


@dataclasses.dataclass
class Account:
    currency: str
    no_overdraft: bool
    balance_minor: int = 0
    pending_minor: int = 0
    credits_minor_total: int = 0
    debits_minor_total: int = 0
    last_journal_seq: int = 0


@dataclasses.dataclass
class Card:
    card_id: int
    range_id: int
    expiry_yyyymm: int
    status: int
    pan_first6: int
    pan_last4: int
    pan_length: int
    issued_s: int
    activated_s: int = 0
    pin_verifier: bytes = None
    pin_failures: int = 0
    load_day: int = 0
    loaded_today_minor: int = 0
    profile_id: int = 0
    contract_id: int = 0
    stage: int = 0                # records.CardStage
    stage_times: dict = dataclasses.field(default_factory=dict)
    issuer_partner: int = 0       # the partner whose outlet first loaded it


@dataclasses.dataclass
class Recorded:
    request: bytes
    reply: dict
    refunded_minor: int = 0
    flags: int = 0


@dataclasses.dataclass
class Hold:
    card_id: int
    range_id: int
    currency: str
    held_minor: int
    created_s: int
    expires_s: int
    value_owner: int = 0
    volume_ml: int = 0
    counted: bool = False
    status: int = records.HoldState.OPEN
    completed_minor: int = 0
    completed_volume_ml: int = 0


@dataclasses.dataclass
class Package:
    card_id: int
    range_id: int
    quantity_total: int
    quantity_left: int
    created_s: int
    valid_until_s: int
    available_from_s: int = 0
    status: int = records.LotState.OPEN
    partner_id: int = 0
    held_until_s: int = 0         # a points reservation (status HELD): released then


UNITS = records.UNITS_ASSET
POINTS = records.POINTS_ASSET


LotKind = collections.namedtuple("LotKind", "lots asset card_slot issued_slot used_slot expired_slot "
                                 "op_issue op_use op_expiry none_left")
PACKAGES = LotKind("packages", UNITS, Slot.CARD_UNITS, Slot.RANGE_UNITS_SOLD, Slot.RANGE_UNITS_USED,
                   Slot.RANGE_UNITS_EXPIRED, Op.SELL_PACKAGE, Op.USE_UNITS, Op.PACKAGE_EXPIRY,
                   Result.DECLINED_NO_UNITS_LEFT)
POINT_LOTS = LotKind("point_lots", POINTS, Slot.CARD_POINTS, Slot.RANGE_POINTS_ISSUED,
                     Slot.RANGE_POINTS_REDEEMED, Slot.RANGE_POINTS_EXPIRED, Op.EARN_POINTS,
                     Op.REDEEM_POINTS, Op.POINTS_EXPIRY, Result.DECLINED_INSUFFICIENT_POINTS)


def share(whole, approved, before, after):
    """The part of a sale's whole (points, discount) a return of before..after takes back."""
    if whole <= 0 or approved <= 0:
        return 0
    return whole * after // approved - whole * before // approved


def took_effect(result):
    return result in (Result.APPROVED, Result.PARTIALLY_APPROVED)


def blank_reply(op):
    return dict(result=0, op=op, card_status=0, currency="", approved_minor=0, balance_minor=0,
                pending_minor=0, card_id=0, journal_seq=0, approval_code=0, pan_first6=0,
                pan_last4=0, pan_length=0, expiry_yyyymm=0, prompts_missing=0, limit_hit=0,
                volume_ml=0, credit_limit_minor=0, review=False, tier=0, earn_flags=0, discount_bp=0,
                points_earned=0, discount_minor=0, lifetime_spend_minor=0, points_seq=0,
                points_redeemed=0, points_value_minor=0, points_balance=0)

POINTS_OPS = (Op.EARN_POINTS, Op.REDEEM_POINTS, Op.ADJUST_POINTS, Op.TRANSFER_POINTS,
              Op.LOYALTY_SALE, Op.RESERVE_POINTS, Op.CONFIRM_POINTS, Op.RELEASE_POINTS)


class ReferenceLedger(FleetRules, LoyaltyRules):
    POINT_LOTS = POINT_LOTS
    PACKAGE = Package
    def __init__(self):
        self.actor = 0            # the request being applied's actor (0 while time ends lots)
        self.init_fleet()
        self.init_loyalty()
        self.ranges = {}          # range_id -> currency
        self.money_flows = collections.Counter()  # (currency, payer, payee) -> minor units
        self.pin_tries_max = {}   # range_id -> wrong PINs in a row that block a card
        self.pin_policy = {}      # range_id -> its PinPolicy (0: required)
        self.range_limits = {}    # range_id -> (balance max, load per day max); 0: none
        self.serial_digits = {}   # range_id -> digits of a card's serial number
        self.next_serial = {}     # range_id -> the next serial number to allocate
        self.cards = {}           # card_id -> Card
        self.pan_index = {}       # card_key -> card_id
        self.accounts = {}        # (owner, slot) -> Account
        self.requests = {}        # request_id -> Recorded
        self.journal = []         # records.JournalView, seq = index + 1
        self.holds = {}           # hold id (the pre-authorization's request id) -> Hold
        self.packages = {}        # package id (the selling request's id) -> Package
        self.point_lots = {}      # lot id (the earning request's id) -> Package (of points)
        self.next_card_id = 1

    # ---- helpers -------------------------------------------------------------------

    def post(self, rid, op, debit, credit, currency, amount, now_s, reason=0):
        d, c = self.accounts[debit], self.accounts[credit]
        assert amount > 0 and d.currency == currency == c.currency
        seq = len(self.journal) + 1
        d.balance_minor -= amount
        d.debits_minor_total += amount
        d.last_journal_seq = seq
        c.balance_minor += amount
        c.credits_minor_total += amount
        c.last_journal_seq = seq
        assert not d.no_overdraft or d.balance_minor - d.pending_minor >= 0
        self.journal.append(records.JournalView(rid, debit[0], debit[1], credit[0], credit[1],
                                                op, currency, amount, now_s, reason, self.actor,
                                                self.partner, self.origin_partner))
        return seq

    @staticmethod
    def new_account(currency, no_overdraft):
        return Account(currency, no_overdraft)

    def describe(self, card, rp):
        owner = self.value_owner(card)
        acc = self.accounts[(owner, Slot.CARD_VALUE)]
        held = self.accounts[(owner, Slot.CARD_HELD)].balance_minor
        rp.update(card_id=card.card_id, card_status=card.status, pan_first6=card.pan_first6,
                  pan_last4=card.pan_last4, pan_length=card.pan_length,
                  expiry_yyyymm=card.expiry_yyyymm, currency=acc.currency,
                  balance_minor=acc.balance_minor + held, pending_minor=held,
                  credit_limit_minor=self.credit_limit(card))

    def approve(self, rq, rp, amount, seq):
        rp.update(result=Result.APPROVED, approved_minor=amount, journal_seq=seq,
                  approval_code=approval_code(rq.request_id, seq))
        if rp["card_id"]:
            self.describe(self.cards[rp["card_id"]], rp)

    def described_card(self, rq, rp):
        card_id = self.pan_index.get(rq.card_key)
        if card_id is None:
            raise Decline(Result.DECLINED_UNKNOWN_CARD)
        card = self.cards[card_id]
        self.describe(card, rp)
        return card

    def money_checks(self, rq, rp, now_yyyymm, allow_issued):
        card = self.described_card(rq, rp)
        bad = self.card_unusable(card, now_yyyymm, allow_issued)
        if bad is not None:
            raise Decline(bad)
        if rp["currency"] != rq.currency:
            raise Decline(Result.DECLINED_CURRENCY_MISMATCH)
        return card

    @staticmethod
    def card_unusable(card, now_yyyymm, allow_issued):
        if card.status == CardStatus.CLOSED:
            return Result.DECLINED_CARD_CLOSED
        if card.status == CardStatus.BLOCKED:
            return Result.DECLINED_CARD_BLOCKED
        if card.status == CardStatus.ISSUED and not allow_issued:
            return Result.DECLINED_CARD_NOT_ACTIVE
        if card.expiry_yyyymm < now_yyyymm:
            return Result.DECLINED_CARD_EXPIRED
        return None

    # ---- operations ----------------------------------------------------------------

    def create_range(self, rq, packed, rp, now_s, now_yyyymm):
        if rq.range_id in self.ranges:
            raise Decline(Result.DECLINED_CARD_RANGE_EXISTS)
        self.ranges[rq.range_id] = rq.currency
        self.pin_tries_max[rq.range_id] = rq.pin_tries_max or records.PIN_TRIES_MAX_DEFAULT
        self.pin_policy[rq.range_id] = rq.pin_policy
        self.range_limits[rq.range_id] = (rq.balance_max_minor, rq.load_per_day_max_minor)
        self.serial_digits[rq.range_id] = rq.pan_length - rq.iin_digits - 1
        for slot in (Slot.RANGE_FUNDING, Slot.RANGE_MERCHANT, Slot.RANGE_SALES_ELSEWHERE):
            self.accounts[(SYSTEM + rq.range_id, slot)] = Account(rq.currency, False)
        for slot in (Slot.RANGE_UNITS_SOLD, Slot.RANGE_UNITS_USED, Slot.RANGE_UNITS_EXPIRED):
            self.accounts[(SYSTEM + rq.range_id, slot)] = Account(UNITS, False)
        for slot in (Slot.RANGE_POINTS_ISSUED, Slot.RANGE_POINTS_REDEEMED, Slot.RANGE_POINTS_EXPIRED,
                     Slot.RANGE_POINTS_ADJUSTED):
            self.accounts[(SYSTEM + rq.range_id, slot)] = Account(POINTS, False)
        rp["currency"] = rq.currency
        self.approve(rq, rp, 0, 0)

    def replace_card(self, rq, payload, rp, now_s, now_yyyymm):
        """All of a lost or stolen card moves to a new, unused card of its range."""
        card = self.open_card(rq, rp)
        new = self.cards.get(self.pan_index.get(payload))
        if new is None or new.range_id != card.range_id or new.status != CardStatus.ISSUED or \
                new.activated_s or new.card_id == card.card_id or \
                self.card_unusable(new, now_yyyymm, True) is not None:
            raise Decline(Result.DECLINED_REPLACEMENT_UNUSABLE)
        if self.accounts[(self.value_owner(card), Slot.CARD_HELD)].balance_minor or \
                self.accounts[(card.card_id, Slot.CARD_POINTS_HELD)].balance_minor:
            raise Decline(Result.DECLINED_HOLDS_OPEN)
        seq = 0

        def move(debit, credit, currency, amount):
            nonlocal seq
            last = self.post(rq.request_id, Op.REPLACE_CARD, debit, credit, currency, amount, now_s)
            seq = seq or last

        value = 0 if card.contract_id else self.accounts[(card.card_id, Slot.CARD_VALUE)].balance_minor
        if value > 0:
            move((card.card_id, Slot.CARD_VALUE), (new.card_id, Slot.CARD_VALUE), rp["currency"], value)
        for kind in (PACKAGES, POINT_LOTS):
            lots = getattr(self, kind.lots)
            moved = 0
            for lot in lots.values():
                if lot.card_id == card.card_id and lot.status == records.LotState.OPEN:
                    lot.card_id = new.card_id
                    moved += lot.quantity_left
            if moved:
                move((card.card_id, kind.card_slot), (new.card_id, kind.card_slot), kind.asset, moved)
        owed = -self.points_owed(card)
        if owed:
            move((new.card_id, Slot.CARD_POINTS_OWED), (card.card_id, Slot.CARD_POINTS_OWED), POINTS, owed)
        if card.card_id in self.members:
            self.members[new.card_id] = dataclasses.replace(
                self.members[card.card_id], month_spend=list(self.members[card.card_id].month_spend),
                month_points=list(self.members[card.card_id].month_points))
        if card.card_id in self.usage:
            self.usage[new.card_id] = copy.deepcopy(self.usage[card.card_id])
        new.profile_id, new.contract_id = card.profile_id, card.contract_id
        new.load_day, new.loaded_today_minor, new.stage = card.load_day, card.loaded_today_minor, card.stage
        new.issuer_partner = card.issuer_partner
        if card.status != CardStatus.ISSUED and (card.status == CardStatus.ACTIVE or card.activated_s):
            new.status, new.activated_s = CardStatus.ACTIVE, now_s
        card.status = CardStatus.CLOSED
        self.approve(rq, rp, value, seq)

    def set_stage(self, rq, packed, rp, now_s, now_yyyymm):
        card = self.open_card(rq, rp)
        if rq.stage < card.stage:
            raise Decline(Result.DECLINED_INVALID_STATUS_CHANGE)
        for stage in range(card.stage + 1, rq.stage + 1):
            card.stage_times[stage] = now_s
        card.stage = max(card.stage, rq.stage)
        self.approve(rq, rp, 0, 0)

    def allocate_serials(self, rq, packed, rp, now_s, now_yyyymm):
        if rq.range_id not in self.ranges:
            raise Decline(Result.DECLINED_UNKNOWN_CARD_RANGE)
        first = self.next_serial.get(rq.range_id, 1)
        if first + rq.serial_count - 1 > 10 ** self.serial_digits[rq.range_id] - 1:
            raise Decline(Result.DECLINED_RANGE_EXHAUSTED)
        self.next_serial[rq.range_id] = first + rq.serial_count
        self.approve(rq, rp, first, 0)

    def issue_card(self, rq, packed, rp, now_s, now_yyyymm):
        if rq.range_id not in self.ranges:
            raise Decline(Result.DECLINED_UNKNOWN_CARD_RANGE)
        if rq.card_key in self.pan_index:
            self.describe(self.cards[self.pan_index[rq.card_key]], rp)
            raise Decline(Result.DECLINED_CARD_ALREADY_ISSUED)
        card_id = self.next_card_id
        self.next_card_id += 1
        self.cards[card_id] = Card(card_id, rq.range_id, rq.expiry_yyyymm, CardStatus.ISSUED,
                                   rq.pan_first6, rq.pan_last4, rq.pan_length, now_s)
        self.accounts[(card_id, Slot.CARD_VALUE)] = Account(self.ranges[rq.range_id], True)
        self.accounts[(card_id, Slot.CARD_HELD)] = Account(self.ranges[rq.range_id], True)
        self.accounts[(card_id, Slot.CARD_SALES_ELSEWHERE)] = Account(self.ranges[rq.range_id], False)
        self.accounts[(card_id, Slot.CARD_UNITS)] = Account(UNITS, True)
        self.accounts[(card_id, Slot.CARD_POINTS)] = Account(POINTS, True)
        self.accounts[(card_id, Slot.CARD_POINTS_HELD)] = Account(POINTS, True)
        self.accounts[(card_id, Slot.CARD_POINTS_OWED)] = Account(POINTS, False)
        self.pan_index[rq.card_key] = card_id
        rp["card_id"] = card_id
        self.approve(rq, rp, 0, 0)

    def set_status(self, rq, packed, rp, now_s, now_yyyymm):
        card = self.described_card(rq, rp)
        if card.status == CardStatus.CLOSED or rq.target_status not in (CardStatus.BLOCKED,
                                                                         CardStatus.ACTIVE):
            raise Decline(Result.DECLINED_INVALID_STATUS_CHANGE)
        if rq.target_status == CardStatus.ACTIVE:
            if card.status == CardStatus.BLOCKED:
                card.status = CardStatus.ACTIVE if card.activated_s else CardStatus.ISSUED
                card.pin_failures = 0
        else:
            card.status = CardStatus.BLOCKED
        self.approve(rq, rp, 0, 0)

    def set_pin(self, rq, packed, rp, now_s, now_yyyymm):
        card = self.described_card(rq, rp)
        if card.status == CardStatus.CLOSED:
            raise Decline(Result.DECLINED_CARD_CLOSED)
        card.pin_verifier = rq.pin_verifier
        card.pin_failures = 0
        self.approve(rq, rp, 0, 0)

    def load(self, rq, packed, rp, now_s, now_yyyymm):
        card = self.money_checks(rq, rp, now_yyyymm, True)
        balance_max, per_day_max = self.range_limits[card.range_id]
        if rp["balance_minor"] + rq.amount_minor > (balance_max or BALANCE_MINOR_MAX):
            raise Decline(Result.DECLINED_BALANCE_LIMIT_EXCEEDED)
        day = now_s // 86400
        loaded = card.loaded_today_minor if card.load_day == day else 0
        if per_day_max and loaded + rq.amount_minor > per_day_max:
            raise Decline(Result.DECLINED_LOAD_LIMIT_EXCEEDED)
        if card.status == CardStatus.ISSUED:
            card.status = CardStatus.ACTIVE
            card.activated_s = now_s
        if not card.issuer_partner:
            card.issuer_partner = self.partner_of(rq.outlet_code)
        card.load_day, card.loaded_today_minor = day, loaded + rq.amount_minor
        seq = self.post(rq.request_id, Op.LOAD, (SYSTEM + card.range_id, Slot.RANGE_FUNDING),
                        (self.value_owner(card), Slot.CARD_VALUE), rq.currency, rq.amount_minor, now_s)
        self.approve(rq, rp, rq.amount_minor, seq)

    def own_value_card(self, rq, rp):
        card = self.open_card(rq, rp)
        if card.contract_id:
            raise Decline(Result.DECLINED_CONTRACT_CARD)
        return card

    def open_card(self, rq, rp):
        card = self.described_card(rq, rp)
        if card.status == CardStatus.CLOSED:
            raise Decline(Result.DECLINED_CARD_CLOSED)
        return card

    def adjust(self, rq, packed, rp, now_s, now_yyyymm):
        card = self.own_value_card(rq, rp)
        if rp["currency"] != rq.currency:
            raise Decline(Result.DECLINED_CURRENCY_MISMATCH)
        funding, value = (SYSTEM + card.range_id, Slot.RANGE_FUNDING), (card.card_id, Slot.CARD_VALUE)
        if rq.adjust_down:
            if rp["balance_minor"] - rp["pending_minor"] < rq.amount_minor:
                raise Decline(Result.DECLINED_INSUFFICIENT_FUNDS)
            seq = self.post(rq.request_id, Op.ADJUST, value, funding, rq.currency, rq.amount_minor,
                            now_s, rq.reason)
        else:
            if rp["balance_minor"] + rq.amount_minor > BALANCE_MINOR_MAX:
                raise Decline(Result.DECLINED_BALANCE_LIMIT_EXCEEDED)
            seq = self.post(rq.request_id, Op.ADJUST, funding, value, rq.currency, rq.amount_minor,
                            now_s, rq.reason)
        self.approve(rq, rp, rq.amount_minor, seq)

    def clear(self, rq, packed, rp, now_s, now_yyyymm):
        card = self.own_value_card(rq, rp)
        cleared = rp["balance_minor"] - rp["pending_minor"]
        seq = 0
        if cleared:
            seq = self.post(rq.request_id, Op.CLEAR, (card.card_id, Slot.CARD_VALUE),
                            (SYSTEM + card.range_id, Slot.RANGE_FUNDING), rp["currency"], cleared,
                            now_s, rq.reason)
        self.approve(rq, rp, cleared, seq)

    def deactivate(self, rq, payload, rp, now_s, now_yyyymm):
        """Closed for good; its value zero already (0), paid out (1) or moved (2)."""
        card = self.open_card(rq, rp)
        value = 0 if card.contract_id else self.accounts[(card.card_id, Slot.CARD_VALUE)].balance_minor
        if self.accounts[(self.value_owner(card), Slot.CARD_HELD)].balance_minor or \
                self.accounts[(card.card_id, Slot.CARD_POINTS_HELD)].balance_minor:
            raise Decline(Result.DECLINED_HOLDS_OPEN)
        if rq.close_disposition == 0 and value:
            raise Decline(Result.DECLINED_BALANCE_NOT_ZERO)
        seq = 0
        if rq.close_disposition == 2:
            receiver = self.cards.get(self.pan_index.get(payload))
            if receiver is None or receiver.card_id == card.card_id or receiver.contract_id or \
                    self.card_unusable(receiver, now_yyyymm, True) is not None:
                raise Decline(Result.DECLINED_RECEIVING_CARD_UNUSABLE)
            account = self.accounts[(receiver.card_id, Slot.CARD_VALUE)]
            if account.currency != rp["currency"]:
                raise Decline(Result.DECLINED_CURRENCY_MISMATCH)
            if account.balance_minor + value > (self.range_limits[receiver.range_id][0] or BALANCE_MINOR_MAX):
                raise Decline(Result.DECLINED_BALANCE_LIMIT_EXCEEDED)
            if value:
                seq = self.post(rq.request_id, Op.DEACTIVATE, (card.card_id, Slot.CARD_VALUE),
                                (receiver.card_id, Slot.CARD_VALUE), rp["currency"], value, now_s, rq.reason)
                if receiver.status == CardStatus.ISSUED:
                    receiver.status, receiver.activated_s = CardStatus.ACTIVE, now_s
        elif rq.close_disposition == 1 and value:
            seq = self.post(rq.request_id, Op.DEACTIVATE, (card.card_id, Slot.CARD_VALUE),
                            (SYSTEM + card.range_id, Slot.RANGE_FUNDING), rp["currency"], value, now_s,
                            rq.reason)
        card.status = CardStatus.CLOSED
        self.approve(rq, rp, value, seq)

    def purchase(self, rq, packed, rp, now_s, now_yyyymm):
        card, amount, volume, fleet = self.charge_checks(rq, rp, now_s, now_yyyymm, True)
        seq = 0
        if amount:
            seq = self.post(rq.request_id, Op.PURCHASE, (self.value_owner(card), Slot.CARD_VALUE),
                            (SYSTEM + card.range_id, Slot.RANGE_MERCHANT), rq.currency, amount,
                            now_s)
        self.approve_amount(rq, rp, amount, seq)
        rp["volume_ml"] = volume
        if fleet:
            self.count_usage(rq, card, fleet, amount, volume, False)
            self.flag_soft(fleet, amount, volume, rp)
        self.earn_on_sale(rq, card, amount, volume, PaymentMethod.CARD_VALUE, rp, now_s,
                          discount=rp["discount_minor"])

    def pin_policy_of(self, card, fleet):
        """README/proto: a restriction profile's PIN policy where it says one (a PIN prompt:
        required), else the card's range's; unset: required."""
        if fleet and fleet[0].pin_policy:
            return fleet[0].pin_policy
        return self.pin_policy[card.range_id] or PinPolicy.REQUIRED

    def charge_checks(self, rq, rp, now_s, now_yyyymm, discounted=False):
        card = self.money_checks(rq, rp, now_yyyymm, False)
        fleet = self.fleet_of(card, now_s)
        if fleet:
            self.fleet_rules(rq, fleet, rp)
        policy = self.pin_policy_of(card, fleet) if card.pin_verifier is not None else None
        if policy == PinPolicy.REQUIRED and rq.pin_verifier is None:
            raise Decline(Result.DECLINED_PIN_REQUIRED)
        if policy not in (None, PinPolicy.NOT_USED) and rq.pin_verifier is not None:
            if rq.pin_verifier == card.pin_verifier:
                card.pin_failures = 0
            else:
                card.pin_failures = min(card.pin_failures + 1, 255)
                if card.pin_failures >= self.pin_tries_max[card.range_id]:
                    card.status = CardStatus.BLOCKED
                self.describe(card, rp)
                raise Decline(Result.DECLINED_WRONG_PIN)
        amount, volume = rq.amount_minor, rq.volume_ml
        if fleet:
            amount, volume = self.fleet_limits(rq, fleet, rp, amount, volume)
        if discounted:
            bp = self.member_discount_bp(card)
            rp.update(discount_bp=bp, discount_minor=amount * bp // 10000)
            amount -= rp["discount_minor"]
            if amount == 0 and rp["discount_minor"]:
                return card, 0, volume, fleet
        available = self.available(rp)
        if available < amount:
            if rq.partial_ok and available > 0:
                amount = available
            else:
                rp.update(discount_bp=0, discount_minor=0)
                raise Decline(Result.DECLINED_CREDIT_LIMIT_EXCEEDED if card.contract_id
                              else Result.DECLINED_INSUFFICIENT_FUNDS)
        return card, amount, volume, fleet

    def approve_amount(self, rq, rp, amount, seq):
        self.approve(rq, rp, amount, seq)
        if amount + rp["discount_minor"] < rq.amount_minor:
            rp["result"] = Result.PARTIALLY_APPROVED

    # ---- holds -----------------------------------------------------------------------

    def preauth(self, rq, packed, rp, now_s, now_yyyymm):
        card, amount, volume, fleet = self.charge_checks(rq, rp, now_s, now_yyyymm)
        owner = self.value_owner(card)
        seq = self.post(rq.request_id, Op.PREAUTH, (owner, Slot.CARD_VALUE),
                        (owner, Slot.CARD_HELD), rq.currency, amount, now_s)
        self.holds[rq.request_id] = Hold(card.card_id, card.range_id, rq.currency, amount,
                                         now_s, now_s + self.hold_timeout_s, owner, volume,
                                         bool(fleet))
        self.approve_amount(rq, rp, amount, seq)
        rp["volume_ml"] = volume
        if fleet:
            self.count_usage(rq, card, fleet, amount, volume, True)
            self.flag_soft(fleet, amount, volume, rp)

    @staticmethod
    def closed_hold_result(hold):
        return {records.HoldState.COMPLETED: Result.DECLINED_HOLD_ALREADY_COMPLETED,
                records.HoldState.VOIDED: Result.DECLINED_HOLD_VOIDED}.get(
                    hold.status, Result.DECLINED_HOLD_EXPIRED)

    def close_hold(self, request_id, op, hold, settled, status, now_s):
        assert hold.status == records.HoldState.OPEN and 0 <= settled <= hold.held_minor
        seq = 0
        held = (hold.value_owner, Slot.CARD_HELD)
        if settled:
            seq = self.post(request_id, op, held, (SYSTEM + hold.range_id, Slot.RANGE_MERCHANT),
                            hold.currency, settled, now_s)
        if hold.held_minor - settled:
            seq = self.post(request_id, op, held, (hold.value_owner, Slot.CARD_VALUE), hold.currency,
                            hold.held_minor - settled, now_s)
        self.release_reservation(hold)
        hold.status = status
        hold.completed_minor = settled
        return seq

    def complete(self, rq, packed, rp, now_s, now_yyyymm):
        card = self.described_card(rq, rp)
        hold = self.holds.get(rq.ref_request_id)
        if hold is None:
            raise Decline(Result.DECLINED_HOLD_NOT_FOUND)
        if hold.card_id != card.card_id:
            raise Decline(Result.DECLINED_CARD_MISMATCH)
        if hold.status != records.HoldState.OPEN:
            raise Decline(self.closed_hold_result(hold))
        if hold.currency != rq.currency:
            raise Decline(Result.DECLINED_CURRENCY_MISMATCH)
        if rq.amount_minor > hold.held_minor or (hold.volume_ml and rq.volume_ml > hold.volume_ml):
            raise Decline(Result.DECLINED_COMPLETION_EXCEEDS_HOLD)
        fleet = self.fleet_of(card, now_s)
        if fleet and not self.products_allowed(rq, fleet[0]):
            raise Decline(Result.DECLINED_PRODUCT_NOT_ALLOWED)
        bp = self.member_discount_bp(card) if rq.amount_minor else 0
        discount = rq.amount_minor * bp // 10000
        charged = rq.amount_minor - discount
        seq = self.close_hold(rq.request_id, Op.COMPLETE, hold, charged,
                              records.HoldState.COMPLETED, now_s)
        hold.completed_volume_ml = rq.volume_ml
        self.approve(rq, rp, charged, seq)
        rp.update(volume_ml=rq.volume_ml, discount_bp=bp, discount_minor=discount)
        if fleet and rq.amount_minor:
            fleet = self.fleet_of(card, now_s)      # close_hold released the reservation
            self.count_usage(rq, card, fleet, charged, rq.volume_ml, False)
            self.flag_soft(fleet, charged, rq.volume_ml, rp)
        if rq.amount_minor:
            self.earn_on_sale(rq, card, charged, rq.volume_ml, PaymentMethod.CARD_VALUE,
                              rp, now_s, discount=discount)

    def void(self, rq, packed, rp, now_s, now_yyyymm):
        hold = self.holds.get(rq.ref_request_id)
        if hold is None:
            raise Decline(Result.DECLINED_HOLD_NOT_FOUND)
        rp["card_id"] = hold.card_id
        self.describe(self.cards[hold.card_id], rp)
        if hold.status != records.HoldState.OPEN:
            raise Decline(self.closed_hold_result(hold))
        released = hold.held_minor
        seq = self.close_hold(rq.request_id, Op.VOID, hold, 0, records.HoldState.VOIDED, now_s)
        self.approve(rq, rp, released, seq)

    # ---- lots: subscription packages and loyalty points -----------------------------

    def describe_lots(self, kind, rp):
        owed = self.points_owed(self.cards[rp["card_id"]]) if kind is POINT_LOTS else 0
        rp.update(currency=kind.asset,
                  balance_minor=self.accounts[(rp["card_id"], kind.card_slot)].balance_minor + owed,
                  pending_minor=0)

    def issue_lot(self, kind, rq, payload, rp, now_s, now_yyyymm):
        card = self.described_card(rq, rp)
        bad = self.card_unusable(card, now_yyyymm, True)
        if bad is None and rq.valid_until_s and rq.valid_until_s <= now_s:
            bad = Result.DECLINED_CARD_EXPIRED
        if bad is not None:
            self.describe_lots(kind, rp)
            raise Decline(bad)
        self.activate(card, now_s)
        if kind is POINT_LOTS:
            self.partner = self.partner_of(rq.outlet_code)
            seq = self.credit_points(rq, card, rq.amount_minor, rq.valid_until_s, Op.EARN_POINTS, now_s)
        else:
            seq = self.post(rq.request_id, kind.op_issue, (SYSTEM + card.range_id, kind.issued_slot),
                            (card.card_id, kind.card_slot), kind.asset, rq.amount_minor, now_s)
            self.new_lot(kind, rq, card, rq.amount_minor, rq.valid_until_s, now_s)
        self.approve(rq, rp, rq.amount_minor, seq)
        self.describe_lots(kind, rp)

    @staticmethod
    def activate(card, now_s):
        if card.status == CardStatus.ISSUED:
            card.status = CardStatus.ACTIVE
            card.activated_s = now_s

    def new_lot(self, kind, rq, card, amount, valid_until_s, now_s, by_program=True, part=0,
                issuer=None):
        available_from_s = now_s
        if kind is POINT_LOTS and by_program:
            valid_until_s, available_from_s = self.lot_terms(card, valid_until_s, now_s)
        if issuer is not None:
            self.origin_partner = issuer
        getattr(self, kind.lots)[part_lot_id(rq.request_id, part)] = Package(
            card.card_id, card.range_id, amount, amount, now_s, valid_until_s, available_from_s,
            partner_id=self.partner if by_program else self.origin_partner)

    def take_from_lots(self, kind, card, need, now_s, taken=None):
        """Take `need` from the card's valid lots, earliest-expiring first; returns the
        expiry of the first lot taken from, or raises the decline. taken: gets [partner,
        amount] per run of lots one partner issued."""
        lots = getattr(self, kind.lots)
        usable = sorted((lot_time(p), pid) for pid, p in lots.items()
                        if p.card_id == card.card_id and p.status == records.LotState.OPEN
                        and lot_time(p) >= now_s)
        pending = sum(lots[pid].quantity_left for _, pid in usable if lots[pid].available_from_s > now_s)
        usable = [(t, pid) for t, pid in usable if lots[pid].available_from_s <= now_s]
        available = sum(lots[pid].quantity_left for _, pid in usable)
        if available < need:
            raise Decline(Result.DECLINED_POINTS_PENDING if available + pending >= need
                          else kind.none_left)
        earliest = lots[usable[0][1]].valid_until_s if usable else 0
        for _, pid in usable:
            if need == 0:
                break
            lot = lots[pid]
            take = min(lot.quantity_left, need)
            if taken is not None:
                if taken and taken[-1][0] == lot.partner_id:
                    taken[-1][1] += take
                else:
                    taken.append([lot.partner_id, take])
            lot.quantity_left -= take
            need -= take
            if lot.quantity_left == 0:
                lot.status = records.LotState.USED_UP
        return earliest

    def use_lots(self, kind, rq, payload, rp, now_s, now_yyyymm):
        card = self.described_card(rq, rp)
        try:
            bad = self.card_unusable(card, now_yyyymm, False)
            if bad is None and kind is POINT_LOTS and self.points_owed(card) < 0:
                bad = Result.DECLINED_POINTS_OWED
            if bad is not None:
                raise Decline(bad)
            taken = []
            self.take_from_lots(kind, card, rq.amount_minor, now_s, taken)
        except Decline:
            self.describe_lots(kind, rp)
            raise
        if kind is POINT_LOTS:
            self.partner = self.partner_of(rq.outlet_code)
        seq = 0
        for origin, amount in taken:
            self.origin_partner = origin
            last = self.post(rq.request_id, kind.op_use, (card.card_id, kind.card_slot),
                             (SYSTEM + card.range_id, kind.used_slot), kind.asset, amount, now_s)
            seq = seq or last
        self.origin_partner = 0
        self.approve(rq, rp, rq.amount_minor, seq)
        self.describe_lots(kind, rp)

    def expire_lots(self, kind, now_s):
        lots = getattr(self, kind.lots)
        due = sorted((lot_time(p), pid) for pid, p in lots.items()
                     if p.status in (records.LotState.OPEN, records.LotState.HELD)
                     and lot_time(p) < now_s)
        for _, pid in due[:records.HOLD_EXPIRIES_PER_BATCH_MAX]:
            lot = lots[pid]
            if lot.status == records.LotState.HELD:     # nobody confirmed it
                self.settle_reservation(pid, self.requests[pid], 0, Op.POINTS_HOLD_EXPIRY,
                                        records.REQUEST_FLAG_TIMED_OUT, now_s)
                continue
            self.origin_partner = lot.partner_id
            self.post(pid, kind.op_expiry, (lot.card_id, kind.card_slot),
                      (SYSTEM + lot.range_id, kind.expired_slot), kind.asset, lot.quantity_left, now_s)
            self.origin_partner = 0
            lot.status = records.LotState.EXPIRED

    def expire_holds(self, now_s):
        due = sorted((h.expires_s, hold_id) for hold_id, h in self.holds.items()
                     if h.status == records.HoldState.OPEN and h.expires_s <= now_s)
        for _, hold_id in due[:records.HOLD_EXPIRIES_PER_BATCH_MAX]:
            self.close_hold(hold_id, Op.HOLD_EXPIRY, self.holds[hold_id], 0,
                            records.HoldState.EXPIRED, now_s)

    def refund(self, rq, packed, rp, now_s, now_yyyymm):
        card = self.money_checks(rq, rp, now_yyyymm, False)
        original = self.requests.get(rq.ref_request_id)
        if original is None or original.flags & FLAG_TOMBSTONE:
            raise Decline(Result.DECLINED_ORIGINAL_NOT_FOUND)
        o_rq = records.unpack_request(original.request)
        if o_rq.op not in (Op.PURCHASE, Op.COMPLETE, Op.LOYALTY_SALE) or \
                not took_effect(original.reply["result"]):
            raise Decline(Result.DECLINED_ORIGINAL_NOT_REFUNDABLE)
        if original.flags & FLAG_REVERSED:
            raise Decline(Result.DECLINED_ALREADY_REVERSED)
        if original.reply["card_id"] != card.card_id:
            raise Decline(Result.DECLINED_CARD_MISMATCH)
        if original.refunded_minor + rq.amount_minor > original.reply["approved_minor"]:
            raise Decline(Result.DECLINED_REFUND_EXCEEDS_ORIGINAL)
        money = o_rq.op != Op.LOYALTY_SALE
        if money and rp["balance_minor"] + rq.amount_minor > BALANCE_MINOR_MAX:
            raise Decline(Result.DECLINED_BALANCE_LIMIT_EXCEEDED)
        back = self.points_to_return(original, original.refunded_minor,
                                     original.refunded_minor + rq.amount_minor)
        discount_back = share(original.reply["discount_minor"], original.reply["approved_minor"],
                              original.refunded_minor, original.refunded_minor + rq.amount_minor)
        original.refunded_minor += rq.amount_minor
        if money:
            seq = self.post(rq.request_id, Op.REFUND, (SYSTEM + card.range_id, Slot.RANGE_MERCHANT),
                            (self.value_owner(card), Slot.CARD_VALUE), rq.currency, rq.amount_minor,
                            now_s)
        else:                               # the statistical record of sales paid otherwise
            seq = self.post(rq.request_id, Op.REFUND, (card.card_id, Slot.CARD_SALES_ELSEWHERE),
                            (SYSTEM + card.range_id, Slot.RANGE_SALES_ELSEWHERE), rq.currency,
                            rq.amount_minor, now_s)
        points_seq = self.take_back_points(rq, card, back, rq.amount_minor, now_s, discount_back)
        self.approve(rq, rp, rq.amount_minor, seq)
        rp.update(points_earned=-back, points_seq=points_seq)
        if not money:
            self.describe_lots(POINT_LOTS, rp)

    def reverse(self, rq, packed, rp, now_s, now_yyyymm):
        original = self.requests.get(rq.ref_request_id)
        if original is None:
            self.requests[rq.ref_request_id] = Recorded(b"", blank_reply(0), 0, FLAG_TOMBSTONE)
            self.approve(rq, rp, 0, 0)
            return
        if original.flags & FLAG_TOMBSTONE:
            self.approve(rq, rp, 0, 0)
            return
        rp["card_id"] = original.reply["card_id"]
        o_rq = records.unpack_request(original.request)

        def decline(result):
            if rp["card_id"]:
                self.describe(self.cards[rp["card_id"]], rp)
            raise Decline(result)

        if o_rq.op not in (Op.LOAD, Op.PURCHASE, Op.REFUND, Op.PREAUTH, Op.LOYALTY_SALE):
            decline(Result.DECLINED_NOT_REVERSIBLE)
        if original.flags & FLAG_REVERSED:
            decline(Result.DECLINED_ALREADY_REVERSED)
        if not took_effect(original.reply["result"]):
            original.flags |= FLAG_REVERSED
            self.approve(rq, rp, 0, 0)
            return
        if o_rq.op == Op.PREAUTH:
            hold = self.holds[o_rq.request_id]
            if hold.status != records.HoldState.OPEN:
                decline(Result.DECLINED_NOT_REVERSIBLE)
            amount = hold.held_minor
            seq = self.close_hold(rq.request_id, Op.REVERSAL, hold, 0, records.HoldState.VOIDED, now_s)
            original.flags |= FLAG_REVERSED
            self.approve(rq, rp, amount, seq)
            return
        if o_rq.op in (Op.PURCHASE, Op.LOYALTY_SALE) and original.refunded_minor:
            decline(Result.DECLINED_NOT_REVERSIBLE)
        if o_rq.op == Op.REFUND and \
                records.unpack_request(self.requests[o_rq.ref_request_id].request).op == Op.LOYALTY_SALE:
            decline(Result.DECLINED_NOT_REVERSIBLE)
        amount = original.reply["approved_minor"]
        card = self.cards[original.reply["card_id"]]
        self.describe(card, rp)
        if card.status == CardStatus.CLOSED:      # README: a closed card takes no value
            raise Decline(Result.DECLINED_CARD_CLOSED)
        system = SYSTEM + card.range_id
        if o_rq.op == Op.LOYALTY_SALE:
            seq = 0
            if amount + original.reply["points_value_minor"]:
                seq = self.post(rq.request_id, Op.REVERSAL, (card.card_id, Slot.CARD_SALES_ELSEWHERE),
                                (system, Slot.RANGE_SALES_ELSEWHERE), o_rq.currency,
                                amount + original.reply["points_value_minor"], now_s)
            points_seq = self.take_back_points(rq, card, original.reply["points_earned"], amount,
                                               now_s, original.reply["discount_minor"])
            if original.reply["points_redeemed"]:
                self.restore_redeemed(rq, card, original, now_s)
            original.flags |= FLAG_REVERSED
            self.approve(rq, rp, amount, seq)
            rp.update(points_earned=-original.reply["points_earned"], points_seq=points_seq)
            self.describe_lots(POINT_LOTS, rp)
            return
        if o_rq.op == Op.PURCHASE:
            if rp["balance_minor"] + amount > BALANCE_MINOR_MAX:
                raise Decline(Result.DECLINED_BALANCE_LIMIT_EXCEEDED)
            seq = 0
            if amount:
                seq = self.post(rq.request_id, Op.REVERSAL, (system, Slot.RANGE_MERCHANT),
                                (self.value_owner(card), Slot.CARD_VALUE), rp["currency"], amount,
                                now_s)
                self.uncount_purchase(card, o_rq, original.reply, now_s)
            self.take_back_points(rq, card, original.reply["points_earned"], amount, now_s,
                                  original.reply["discount_minor"])
        else:
            if self.available(rp) < amount:
                raise Decline(Result.DECLINED_INSUFFICIENT_FUNDS)
            contra = Slot.RANGE_MERCHANT if o_rq.op == Op.REFUND else Slot.RANGE_FUNDING
            seq = self.post(rq.request_id, Op.REVERSAL, (self.value_owner(card), Slot.CARD_VALUE),
                            (system, contra), rp["currency"], amount, now_s)
            if o_rq.op == Op.REFUND:
                bought = self.requests[o_rq.ref_request_id]
                discount_back = share(bought.reply["discount_minor"], bought.reply["approved_minor"],
                                      bought.refunded_minor - amount, bought.refunded_minor)
                bought.refunded_minor -= amount
                taken_back = -original.reply["points_earned"]
                if taken_back > 0:          # the points the refund took back return
                    self.credit_points(rq, card, taken_back, 0, Op.EARN_POINTS, now_s)
                self.count_member(card, amount, taken_back, now_s, discount_back)
        original.flags |= FLAG_REVERSED
        self.approve(rq, rp, amount, seq)

    # ---- one request, a batch ------------------------------------------------------

    def valid(self, rq):
        if rq.op in (Op.LOAD, Op.PURCHASE, Op.REFUND, Op.PREAUTH):
            return 0 < rq.amount_minor <= AMOUNT_MINOR_MAX
        if rq.op == Op.COMPLETE:
            return 0 <= rq.amount_minor <= AMOUNT_MINOR_MAX
        if rq.op == Op.ADJUST:
            return 0 < rq.amount_minor <= AMOUNT_MINOR_MAX
        if rq.op == Op.CLEAR:
            return rq.amount_minor == 0
        if rq.op == Op.SELL_PACKAGE:
            return 0 < rq.amount_minor <= AMOUNT_MINOR_MAX and rq.valid_until_s > 0
        if rq.op in (Op.CONFIRM_POINTS, Op.RELEASE_POINTS):
            return rq.ref_request_id != rq.request_id and (
                0 < rq.amount_minor <= AMOUNT_MINOR_MAX if rq.op == Op.CONFIRM_POINTS
                else rq.amount_minor == 0)
        if rq.op in (Op.USE_UNITS, Op.EARN_POINTS, Op.REDEEM_POINTS, Op.ADJUST_POINTS,
                     Op.TRANSFER_POINTS, Op.RESERVE_POINTS):
            return 0 < rq.amount_minor <= AMOUNT_MINOR_MAX
        if rq.op == Op.CREATE_RANGE:
            return rq.balance_max_minor >= 0 and rq.load_per_day_max_minor >= 0 and rq.numbering <= 2
        if rq.op == Op.VOID:
            return rq.ref_request_id != rq.request_id
        if rq.op == Op.REVERSAL:
            return rq.ref_request_id != rq.request_id
        if rq.op == Op.SET_PIN:
            return rq.pin_verifier is not None
        return Op.CREATE_RANGE <= rq.op <= Op.SET_STATUS

    def apply_one(self, packed: bytes, now_s: int, now_yyyymm: int):
        rq = records.unpack_request(packed)
        payload = packed[records.REQUEST_SIZE:]
        rp = blank_reply(rq.op)
        self.actor = rq.actor
        self.partner = self.origin_partner = 0
        extended = self.valid_extended(rq, payload)
        if extended is False or (extended is None and not self.valid(rq)):
            rp["result"] = Result.REJECTED_INVALID_REQUEST
            return records.Reply(**rp)
        existing = self.requests.get(rq.request_id)
        if existing is not None:
            if existing.flags & FLAG_TOMBSTONE:
                # The original after its blind reversal: the card as it is (proto:
                # balances as they were), in the terms of its operation.
                rp.update(currency=rq.currency)
                card_id = self.pan_index.get(rq.card_key)
                if card_id:
                    self.describe(self.cards[card_id], rp)
                    if rq.op in POINTS_OPS:
                        self.describe_lots(POINT_LOTS, rp)
                    elif rq.op in (Op.SELL_PACKAGE, Op.USE_UNITS):
                        self.describe_lots(PACKAGES, rp)
                rp.update(result=Result.DECLINED_ALREADY_REVERSED)
                self.requests[rq.request_id] = Recorded(packed, dict(rp), 0, FLAG_REVERSED)
            elif existing.request == packed:
                rp = dict(existing.reply)
            else:
                rp["result"] = Result.REJECTED_REQUEST_ID_REUSED
            return records.Reply(**rp)
        handler = {Op.LOAD: self.load, Op.PURCHASE: self.purchase, Op.REFUND: self.refund,
                   Op.REVERSAL: self.reverse, Op.ISSUE_CARD: self.issue_card,
                   Op.SET_STATUS: self.set_status, Op.CREATE_RANGE: self.create_range,
                   Op.SET_PIN: self.set_pin, Op.PREAUTH: self.preauth,
                   Op.COMPLETE: self.complete, Op.VOID: self.void, Op.ADJUST: self.adjust,
                   Op.CLEAR: self.clear, Op.DEACTIVATE: self.deactivate,
                   Op.SELL_PACKAGE: functools.partial(self.issue_lot, PACKAGES),
                   Op.USE_UNITS: functools.partial(self.use_lots, PACKAGES),
                   Op.EARN_POINTS: functools.partial(self.issue_lot, POINT_LOTS),
                   Op.REDEEM_POINTS: functools.partial(self.use_lots, POINT_LOTS),
                   Op.DEFINE_PRODUCT: self.define_product, Op.SET_PROFILE: self.set_profile,
                   Op.DEFINE_OUTLET: self.define_outlet, Op.SET_CONTRACT: self.set_contract,
                   Op.ASSIGN_CARD: self.assign_card, Op.SET_PROGRAM: self.set_program,
                   Op.ADJUST_POINTS: self.adjust_points,
                   Op.TRANSFER_POINTS: self.transfer_points, Op.LOYALTY_SALE: self.loyalty_sale,
                   Op.SET_RULES: self.set_rules, Op.SET_MEMBER: self.set_member,
                   Op.RESERVE_POINTS: self.reserve_points, Op.CONFIRM_POINTS: self.close_reservation,
                   Op.RELEASE_POINTS: self.close_reservation,
                   Op.DEFINE_PARTNER: self.define_partner,
                   Op.ALLOCATE_SERIALS: self.allocate_serials, Op.SET_STAGE: self.set_stage,
                   Op.REPLACE_CARD: self.replace_card}[rq.op]
        if rq.op in (Op.PURCHASE, Op.PREAUTH, Op.COMPLETE, Op.LOYALTY_SALE) and \
                any(code not in self.catalog for code in rq.products):
            rp["result"] = Result.REJECTED_UNKNOWN_PRODUCT
            return records.Reply(**rp)
        try:
            handler(rq, payload, rp, now_s, now_yyyymm)
        except Decline as d:
            rp["result"] = d.result
        if rp["result"] == Result.REJECTED_UNKNOWN_PRODUCT:
            return records.Reply(**rp)
        if rp["card_id"] and (rp["points_seq"] or rp["points_earned"] or rp["points_redeemed"] or
                              rp["tier"] or rp["discount_bp"] or rq.op == Op.LOYALTY_SALE):
            card = self.cards[rp["card_id"]]         # a member's sale: its points after it
            rp["points_balance"] = self.accounts[(card.card_id, Slot.CARD_POINTS)].balance_minor \
                + self.points_owed(card)
        self.requests[rq.request_id] = Recorded(packed, dict(rp))
        if rp["result"] in (Result.APPROVED, Result.PARTIALLY_APPROVED) and rp["approved_minor"]:
            self.settle_money(rq, rp)
        if rp["review"]:
            self.reviews[rq.request_id] = (rp["card_id"], now_s, rp["limit_hit"])
        return records.Reply(**rp)

    def settle_money(self, rq, rp):
        """Coalition money: a card's value is its issuer's (the partner that first loaded
        it); value loaded or given back at another partner's outlet is paid to the issuer,
        value spent there (or a load or refund undone) is paid by it. Given back or undone:
        at the outlet of the request it undoes."""
        op, outlet = rq.op, rq.outlet_code
        if op in (Op.REFUND, Op.REVERSAL):
            original = self.requests.get(rq.ref_request_id)
            if original is None or not original.request:
                return
            original = records.unpack_request(original.request)
            outlet = original.outlet_code
            op = {(Op.REFUND, Op.PURCHASE): "back", (Op.REFUND, Op.LOYALTY_SALE): None,
                  (Op.REVERSAL, Op.PURCHASE): "back", (Op.REVERSAL, Op.COMPLETE): "back",
                  (Op.REVERSAL, Op.LOAD): "spent", (Op.REVERSAL, Op.REFUND): "spent"}.get(
                      (op, original.op))
        else:
            op = {Op.LOAD: "back", Op.PURCHASE: "spent", Op.COMPLETE: "spent"}.get(op)
        card = self.cards.get(rp["card_id"])
        where, issuer = self.partner_of(outlet), card.issuer_partner if card else 0
        if op is None or not where or not issuer or where == issuer:
            return
        payer, payee = (where, issuer) if op == "back" else (issuer, where)
        self.money_flows[(rp["currency"], payer, payee)] += rp["approved_minor"]

    def apply_batch(self, packed_requests: list, now_s: int, now_yyyymm: int,
                    hold_timeout_s: int = records.HOLD_TIMEOUT_S_DEFAULT):
        self.hold_timeout_s = hold_timeout_s
        self.actor = self.partner = self.origin_partner = 0
        self.expire_holds(now_s)
        self.expire_lots(PACKAGES, now_s)
        self.expire_lots(POINT_LOTS, now_s)
        return [self.apply_one(p, now_s, now_yyyymm) for p in packed_requests]

