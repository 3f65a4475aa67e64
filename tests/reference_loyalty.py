"""The loyalty part of the reference model: programs, their expiry policy and returns
window, earn rules, tiers, bonuses, discounts and returns, written for clarity (see
ledger.pyx and earning.pxd). Mixed into reference_model.ReferenceLedger."""
import calendar
import dataclasses
import hashlib
import datetime

from cardgate.fastcore import records
from cardgate.fastcore.records import ExpiryKind, Op, Result, RuleKind, RuleScope, Slot

from reference_fleet import Decline

INT64_MAX = 2 ** 63 - 1

POINTS = records.POINTS_ASSET
SYSTEM = records.SYSTEM_OWNER_BASE
CAP = records.AMOUNT_MINOR_MAX
YEAR_S = 365 * 86400


def part_lot_id(request_id, part):
    """A request's part-th lot: its own id, then a digest of it (README: Redemption)."""
    return request_id if part == 0 else \
        hashlib.sha256(b"lot" + request_id + bytes([part])).digest()[:16]


def lot_id_of(reserve):
    return records.unpack_request(reserve.request).request_id


def lot_time(lot):
    """When a lot is due: a reservation at the end of its hold, else at its expiry."""
    if lot.status == records.LotState.HELD:
        return lot.held_until_s
    return lot.valid_until_s or records.LOT_NEVER


@dataclasses.dataclass
class Member:
    month_index: int = 0          # local months since 1970 of the newest bucket
    tier: int = 0
    welcomed: bool = False
    birth_month: int = 0
    birth_day: int = 0
    birthday_year: int = 0
    tier_review_s: int = 0
    lifetime_spend_minor: int = 0
    month_spend: list = dataclasses.field(default_factory=lambda: [0] * 12)
    month_points: list = dataclasses.field(default_factory=lambda: [0] * 12)


def local_datetime(program, now_s):
    return datetime.datetime.fromtimestamp(now_s + program.utc_offset_min * 60,
                                           datetime.timezone.utc)


def month_index(program, now_s):
    local = local_datetime(program, now_s)
    return (local.year - 1970) * 12 + local.month - 1


def in_schedule(days_mask, minute_from, minute_to, local):
    if days_mask and not days_mask >> local.weekday() & 1:
        return False
    minute = local.hour * 60 + local.minute
    if minute_from == minute_to:
        return True
    if minute_from < minute_to:
        return minute_from <= minute < minute_to
    return minute >= minute_from or minute < minute_to


def rule_matches(rule, sale, now_s, local):
    if rule.from_s and now_s < rule.from_s or rule.until_s and now_s >= rule.until_s:
        return False
    if rule.methods and sale["method"] not in rule.methods:
        return False
    if not in_schedule(rule.days_mask, rule.minute_from, rule.minute_to, local):
        return False
    if rule.scope == RuleScope.PARTNER and (not sale["partner"] or sale["partner"] != rule.partner_id):
        return False
    if rule.scope == RuleScope.OUTLETS and sale["outlet"] not in rule.outlets:
        return False
    return not rule.products or bool(set(rule.products) & set(sale["products"]))


def earn(program, rules, sale, member, now_s):
    """(points, welcome given, birthday year or None): the documented order and rounding."""
    local = local_datetime(program, now_s)
    matching = [r for r in rules if rule_matches(r, sale, now_s, local)]
    bases = [min(CAP, (sale["amount"] if r.kind == RuleKind.PER_AMOUNT else sale["volume"])
                 * r.points // r.per)
             for r in matching if r.kind in (RuleKind.PER_AMOUNT, RuleKind.PER_VOLUME)]
    mults = [r.points for r in matching if r.kind == RuleKind.MULTIPLIER]
    fixeds = [r.points for r in matching if r.kind == RuleKind.FIXED]
    if program.stack_rules:
        base = min(CAP, sum(bases))
        mult = 1000 + sum(m - 1000 for m in mults)
        fixed = min(CAP, sum(fixeds))
    else:
        base = max(bases, default=0)
        mult = max(mults, default=1000)
        fixed = max(fixeds, default=0)
    mult = min(max(mult, 0), 65000)
    tier_mult = program.tiers[member.tier - 1].multiplier_permille if member.tier else 1000
    points = min(CAP, min(CAP, base * mult // 1000) * tier_mult // 1000)
    welcome = program.welcome_points > 0 and not member.welcomed
    points += program.welcome_points if welcome else 0
    year = birthday_year(program, member, local)
    points += program.birthday_points if year is not None else 0
    return min(CAP, points + fixed), welcome, year


def birthday_year(program, member, local):
    if not member.birth_month or program.birthday_points <= 0:
        return None
    today = local.date()
    for year in (today.year - 1, today.year, today.year + 1):
        try:
            birthday = datetime.date(year, member.birth_month, member.birth_day)
        except ValueError:          # 29 February, or a day the month lacks: the day after
            birthday = datetime.date(year, member.birth_month, 1) + datetime.timedelta(
                days=member.birth_day - 1)
        if abs((today - birthday).days) <= program.birthday_window_days:
            return None if member.birthday_year == year else year
    return None


def roll(program, member, now_s):
    member.tier = min(member.tier, len(program.tiers))   # a tier the program dropped
    month = month_index(program, now_s)
    for m in range(member.month_index + 1, month + 1)[-12:]:
        member.month_spend[m % 12] = 0
        member.month_points[m % 12] = 0
    member.month_index = max(member.month_index, month)


def count_sale(program, member, spend, points, now_s):
    """Spend and points into the month's bucket; the tier up at once, down at review."""
    member.lifetime_spend_minor = max(0, min(member.lifetime_spend_minor + spend, INT64_MAX))
    member.month_spend[member.month_index % 12] += spend
    member.month_points[member.month_index % 12] += points
    total = sum(member.month_points if program.tiers_by_points else member.month_spend)
    reached = sum(1 for tier in program.tiers if total >= tier.minimum)
    if reached > member.tier or (reached < member.tier and now_s >= member.tier_review_s):
        member.tier = reached
        member.tier_review_s = now_s + YEAR_S


def counted(program, paid, discount):
    """What a sale adds to lifetime spend: its price, or what was paid if the program says."""
    return paid if program.spend_after_discount else paid + discount


def discount_of(program, lifetime_spend):
    return max((step.discount_bp for step in program.discounts
                if lifetime_spend >= step.minimum_spend_minor), default=0)


def policy_expiry(program, now_s):
    """The last second a lot earned at now_s can be used (0: never)."""
    offset_s = program.utc_offset_min * 60
    local = datetime.datetime.fromtimestamp(now_s + offset_s, datetime.timezone.utc)
    months = local.year * 12 + local.month - 1 + program.expiry_n
    if program.expiry_kind == ExpiryKind.DAYS_AFTER:
        end = datetime.date(local.year, local.month, local.day) + \
            datetime.timedelta(days=program.expiry_n + 1)
    elif program.expiry_kind == ExpiryKind.MONTH_END_AFTER:
        end = datetime.date((months + 1) // 12, (months + 1) % 12 + 1, 1)
    elif program.expiry_kind == ExpiryKind.YEAR_END_AFTER:
        end = datetime.date(months // 12 + 1, 1, 1)
    else:
        return 0
    return calendar.timegm(end.timetuple()) - 1 - offset_s


class LoyaltyRules:
    """Expects the ledger's POINT_LOTS (its lot kind of points) and lot helpers."""

    def init_loyalty(self):
        self.programs = {}        # program_id -> records.Program
        self.range_program = {}   # range_id -> program_id
        self.rules = {}           # program_id -> (records.Rule, ...)
        self.partner_names = {}   # partner_id -> name
        self.members = {}         # card_id -> Member
        self.partner = 0          # where the request being applied happens
        self.origin_partner = 0   # who issued the points being used

    def partner_of(self, outlet_code):
        known = self.outlets.get(outlet_code)
        return int.from_bytes(known[1][72:76], "little") if known else 0

    def program_of(self, card):
        return self.programs.get(self.range_program.get(card.range_id))

    def member(self, card, now_s):
        member = self.members.setdefault(card.card_id, Member())
        program = self.program_of(card)
        if program is not None:
            roll(program, member, now_s)
        return member

    def points_owed(self, card):
        return self.accounts[(card.card_id, Slot.CARD_POINTS_OWED)].balance_minor

    def credit_points(self, rq, card, amount, valid_until_s, op, now_s,
                      source=Slot.RANGE_POINTS_ISSUED, reason=0, part=0):
        """Owed points are paid back first; the rest is a lot issued at self.partner."""
        repay = min(-self.points_owed(card), amount)
        seq = 0
        if repay > 0:
            seq = self.post(rq.request_id, op, (SYSTEM + card.range_id, source),
                            (card.card_id, Slot.CARD_POINTS_OWED), POINTS, repay, now_s, reason)
        if amount > repay:
            last = self.post(rq.request_id, op, (SYSTEM + card.range_id, source),
                             (card.card_id, Slot.CARD_POINTS), POINTS, amount - repay, now_s, reason)
            seq = seq or last
            self.new_lot(self.POINT_LOTS, rq, card, amount - repay, valid_until_s, now_s,
                         part=part)
        return seq

    def member_discount_bp(self, card):
        program = self.program_of(card)
        if program is None:
            return 0
        return discount_of(program, self.members.get(card.card_id, Member()).lifetime_spend_minor)

    def earn_on_sale(self, rq, card, spend, volume, method, rp, now_s, earns=True, discount=0):
        program = self.program_of(card)
        if program is None:
            return 0
        member = self.member(card, now_s)
        self.partner = self.partner_of(rq.outlet_code)
        rp["lifetime_spend_minor"] = member.lifetime_spend_minor
        sale = dict(amount=spend, volume=volume, products=rq.products, outlet=rq.outlet_code,
                    partner=self.partner, method=method)
        points, welcome, year = earn(program, self.rules.get(program.program_id, ()), sale,
                                     member, now_s) if earns else (0, False, None)
        flags = 0
        if welcome:
            member.welcomed = True
            flags |= 1
        if year is not None:
            member.birthday_year = year
            flags |= 2
        tier_before = member.tier
        count_sale(program, member, counted(program, spend, discount), points, now_s)
        if member.tier > tier_before:
            flags |= 4
        rp.update(points_earned=points, tier=member.tier, earn_flags=flags)
        if points <= 0:
            return 0
        rp["points_seq"] = self.credit_points(rq, card, points, 0, Op.EARN_POINTS, now_s)
        return rp["points_seq"]

    def count_member(self, card, spend, points, now_s, discount=0):
        program = self.program_of(card)
        if program is not None:
            count_sale(program, self.member(card, now_s), counted(program, spend, discount),
                       points, now_s)

    def take_back_points(self, rq, card, points, spend, now_s, discount=0):
        """The sale's own lot first, then earliest-expiring (pending too); the rest owed."""
        self.count_member(card, -spend, -points, now_s, -discount)
        if points <= 0:
            return 0
        lots = self.point_lots
        own = lots.get(rq.ref_request_id)
        order = [rq.ref_request_id] if own is not None and own.status == records.LotState.OPEN else []
        order += [pid for _, pid in sorted(
            (lot_time(p), pid) for pid, p in lots.items()
            if p.card_id == card.card_id and p.status == records.LotState.OPEN
            and lot_time(p) >= now_s and pid not in order)]
        covered = 0
        for pid in order:
            take = min(lots[pid].quantity_left, points - covered)
            lots[pid].quantity_left -= take
            covered += take
            if lots[pid].quantity_left == 0:
                lots[pid].status = records.LotState.USED_UP
        seq = 0
        issued = (SYSTEM + card.range_id, Slot.RANGE_POINTS_ISSUED)
        if covered:
            seq = self.post(rq.request_id, rq.op, (card.card_id, Slot.CARD_POINTS), issued,
                            POINTS, covered, now_s)
        if points > covered:
            last = self.post(rq.request_id, rq.op, (card.card_id, Slot.CARD_POINTS_OWED), issued,
                             POINTS, points - covered, now_s)
            seq = seq or last
        return seq

    def reserve_points(self, rq, payload, rp, now_s, now_yyyymm):
        card = self.described_card(rq, rp)
        taken = []
        try:
            bad = self.card_unusable(card, now_yyyymm, False)
            if bad is None and self.points_owed(card) < 0:
                bad = Result.DECLINED_POINTS_OWED
            if bad is not None:
                raise Decline(bad)
            earliest = self.take_from_lots(self.POINT_LOTS, card, rq.amount_minor, now_s, taken)
        except Decline:
            self.describe_lots(self.POINT_LOTS, rp)
            raise
        self.partner = self.partner_of(rq.outlet_code)
        seq = 0
        for origin, amount in taken:
            self.origin_partner = origin
            last = self.post(rq.request_id, Op.RESERVE_POINTS, (card.card_id, Slot.CARD_POINTS),
                             (card.card_id, Slot.CARD_POINTS_HELD), POINTS, amount, now_s)
            seq = seq or last
        self.origin_partner = 0
        self.point_lots[rq.request_id] = self.PACKAGE(
            card.card_id, card.range_id, rq.amount_minor, rq.amount_minor, now_s, earliest, now_s,
            records.LotState.HELD, taken[0][0], now_s + self.hold_timeout_s)
        self.approve(rq, rp, rq.amount_minor, seq)
        self.describe_lots(self.POINT_LOTS, rp)

    def settle_reservation(self, posting_id, reserve, redeem, release_op, flag, now_s):
        """Redeem `redeem` where it was reserved, give the rest back: the lot opens again."""
        lot = self.point_lots[records.unpack_request(reserve.request).request_id]
        back = []                   # [(issuer, points)] given back
        groups = []
        for entry in self.journal[reserve.reply["journal_seq"] - 1:]:
            if entry.request_id != lot_id_of(reserve) or entry.op != Op.RESERVE_POINTS:
                break
            groups.append(entry)
        seq = 0
        for entry in groups:
            self.partner, self.origin_partner = entry.partner_id, entry.origin_partner
            take = min(entry.amount_minor, redeem)
            redeem -= take
            if take:
                last = self.post(posting_id, Op.CONFIRM_POINTS, (lot.card_id, Slot.CARD_POINTS_HELD),
                                 (SYSTEM + lot.range_id, Slot.RANGE_POINTS_REDEEMED), POINTS, take, now_s)
                seq = seq or last
            if entry.amount_minor > take:
                last = self.post(posting_id, release_op, (lot.card_id, Slot.CARD_POINTS_HELD),
                                 (lot.card_id, Slot.CARD_POINTS), POINTS, entry.amount_minor - take, now_s)
                seq = seq or last
                back.append((entry.origin_partner, entry.amount_minor - take))
        self.partner = self.origin_partner = 0
        lot.held_until_s = 0
        # The first issuer's points reopen the lot, each other issuer's a lot of its own.
        lot.quantity_left = back[0][1] if back else 0
        lot.partner_id = back[0][0] if back else lot.partner_id
        lot.status = records.LotState.OPEN if back else records.LotState.USED_UP
        for part, (issuer, amount) in enumerate(back[1:], 1):
            self.point_lots[part_lot_id(lot_id_of(reserve), part)] = dataclasses.replace(
                lot, partner_id=issuer, quantity_total=amount, quantity_left=amount,
                created_s=now_s)
        reserve.flags |= flag
        return seq

    def close_reservation(self, rq, payload, rp, now_s, now_yyyymm):
        card = self.described_card(rq, rp)
        confirm = rq.op == Op.CONFIRM_POINTS
        reserve = self.requests.get(rq.ref_request_id)
        try:
            if reserve is None or not reserve.request or \
                    records.unpack_request(reserve.request).op != Op.RESERVE_POINTS or \
                    reserve.reply["result"] not in (Result.APPROVED, Result.PARTIALLY_APPROVED):
                raise Decline(Result.DECLINED_HOLD_NOT_FOUND)
            if reserve.reply["card_id"] != card.card_id:
                raise Decline(Result.DECLINED_CARD_MISMATCH)
            for flag, result in ((records.REQUEST_FLAG_CONFIRMED, Result.DECLINED_HOLD_ALREADY_COMPLETED),
                                 (records.REQUEST_FLAG_RELEASED, Result.DECLINED_HOLD_VOIDED),
                                 (records.REQUEST_FLAG_TIMED_OUT, Result.DECLINED_HOLD_EXPIRED)):
                if reserve.flags & flag:
                    raise Decline(result)
            if confirm and rq.amount_minor > reserve.reply["approved_minor"]:
                raise Decline(Result.DECLINED_COMPLETION_EXCEEDS_HOLD)
        except Decline:
            self.describe_lots(self.POINT_LOTS, rp)
            raise
        seq = self.settle_reservation(rq.request_id, reserve, rq.amount_minor if confirm else 0,
                                      Op.RELEASE_POINTS,
                                      records.REQUEST_FLAG_CONFIRMED if confirm else records.REQUEST_FLAG_RELEASED,
                                      now_s)
        self.approve(rq, rp, rq.amount_minor if confirm else reserve.reply["approved_minor"], seq)
        self.describe_lots(self.POINT_LOTS, rp)

    @staticmethod
    def points_to_return(original, before, after):
        earned, approved = original.reply["points_earned"], original.reply["approved_minor"]
        if earned <= 0 or approved <= 0:
            return 0
        return earned * after // approved - earned * before // approved

    def loyalty_sale(self, rq, payload, rp, now_s, now_yyyymm):
        card = self.described_card(rq, rp)
        bad = self.card_unusable(card, now_yyyymm, True)
        program = self.program_of(card)
        if bad is None and program is None:
            bad = Result.DECLINED_NOT_IN_PROGRAM
        if bad is not None:
            self.describe_lots(self.POINT_LOTS, rp)
            raise Decline(bad)
        lifetime = self.members.get(card.card_id, Member()).lifetime_spend_minor
        discount_bp = discount_of(program, lifetime)
        discount = rq.amount_minor * discount_bp // 10000
        payable = rq.amount_minor - discount
        points, value, taken = rq.points_tendered, 0, []
        try:
            if points:
                rate = program.point_value_millis
                if not rate:
                    raise Decline(Result.DECLINED_POINTS_HAVE_NO_VALUE)
                points = min(points, -(-payable * 1000 // rate))    # no more than it needs
                value = min(payable, points * rate // 1000)
                if self.points_owed(card) < 0:
                    raise Decline(Result.DECLINED_POINTS_OWED)
                self.take_from_lots(self.POINT_LOTS, card, points, now_s, taken)
        except Decline:
            self.describe_lots(self.POINT_LOTS, rp)
            raise
        self.activate(card, now_s)
        rp.update(discount_bp=discount_bp, discount_minor=discount)
        seq = 0
        if payable:
            seq = self.post(rq.request_id, Op.LOYALTY_SALE,
                            (SYSTEM + card.range_id, Slot.RANGE_SALES_ELSEWHERE),
                            (card.card_id, Slot.CARD_SALES_ELSEWHERE), rq.currency, payable, now_s)
        if taken:
            self.partner = self.partner_of(rq.outlet_code)
            for origin, amount in taken:
                self.origin_partner = origin
                self.post(rq.request_id, Op.REDEEM_POINTS, (card.card_id, Slot.CARD_POINTS),
                          (SYSTEM + card.range_id, Slot.RANGE_POINTS_REDEEMED), POINTS, amount, now_s)
            self.origin_partner = 0
            rp.update(points_redeemed=points, points_value_minor=value)
        self.earn_on_sale(rq, card, payable - value, rq.volume_ml, rq.payment_method, rp, now_s,
                          earns=not (taken and program.no_earn_when_redeeming), discount=discount)
        self.approve(rq, rp, payable - value, seq)
        self.describe_lots(self.POINT_LOTS, rp)

    def restore_redeemed(self, rq, card, original, now_s):
        """A reversed sale's points return as a lot per redemption entry, of its issuer."""
        seq, restored = original.reply["journal_seq"], 0         # the seq after the sale's
        while restored < original.reply["points_redeemed"]:
            entry = self.journal[seq]
            assert entry.op == Op.REDEEM_POINTS
            self.partner, self.origin_partner = entry.partner_id, entry.origin_partner
            part = seq - original.reply["journal_seq"]
            self.credit_points(rq, card, entry.amount_minor, 0, Op.REVERSAL, now_s,
                               Slot.RANGE_POINTS_REDEEMED, part=part)
            lot = self.point_lots.get(part_lot_id(rq.request_id, part))
            if lot is not None:
                lot.partner_id = entry.origin_partner
            restored += entry.amount_minor
            seq += 1
        self.partner = self.origin_partner = 0

    def set_rules(self, rq, payload, rp, now_s, now_yyyymm):
        if rq.program_id not in self.programs:
            raise Decline(Result.DECLINED_UNKNOWN_PROGRAM)
        rules = records.unpack_rules(payload)
        if any(code not in self.outlets for rule in rules for code in rule.outlets):
            raise Decline(Result.DECLINED_UNKNOWN_OUTLET)
        if any(rule.scope == RuleScope.PARTNER and rule.partner_id not in self.partner_names
               for rule in rules):
            raise Decline(Result.DECLINED_UNKNOWN_PARTNER)
        if any(code not in self.catalog for rule in rules for code in rule.products):
            raise Decline(Result.REJECTED_UNKNOWN_PRODUCT)
        self.rules[rq.program_id] = rules
        self.approve(rq, rp, 0, 0)

    def define_partner(self, rq, payload, rp, now_s, now_yyyymm):
        self.partner_names[rq.partner_id] = rq.partner_name
        self.approve(rq, rp, 0, 0)

    def set_member(self, rq, payload, rp, now_s, now_yyyymm):
        card = self.described_card(rq, rp)
        if card.status == records.CardStatus.CLOSED:
            raise Decline(Result.DECLINED_CARD_CLOSED)
        member = self.members.setdefault(card.card_id, Member())
        member.birth_month, member.birth_day = divmod(rq.birthday_mmdd, 100)
        self.approve(rq, rp, 0, 0)

    @staticmethod
    def valid_rules(rq, payload):
        size = records.EARN_RULE_SIZE
        if rq.program_id == 0 or len(payload) % size or len(payload) > records.EARN_RULES_MAX * size:
            return False
        for offset in range(0, len(payload), size):
            raw = payload[offset:offset + size]
            kind, scope, places, days, methods = raw[2], raw[3], raw[4], raw[5], raw[6]
            minute_from, minute_to = int.from_bytes(raw[8:10], "little"), int.from_bytes(raw[10:12], "little")
            partner = int.from_bytes(raw[12:16], "little")
            from_s, until_s = int.from_bytes(raw[16:24], "little"), int.from_bytes(raw[24:32], "little")
            points = int.from_bytes(raw[32:40], "little", signed=True)
            per = int.from_bytes(raw[40:48], "little", signed=True)
            if not 1 <= kind <= 4 or scope > 2 or places > records.RULE_OUTLETS_MAX or days >= 128 \
                    or methods >= 16 or minute_from > 1440 or minute_to > 1440 \
                    or (until_s and until_s <= from_s):
                return False
            if (scope == RuleScope.OUTLETS) != (places > 0) or (scope == RuleScope.PARTNER and not partner):
                return False
            if kind == RuleKind.MULTIPLIER:
                ok = 0 <= points <= records.MULTIPLIER_MAX_PERMILLE
            elif kind == RuleKind.FIXED:
                ok = 0 < points <= CAP
            else:
                ok = 0 < points <= records.RULE_POINTS_LIMIT and 0 < per <= CAP
            if not ok:
                return False
        return True

    def lot_terms(self, card, valid_until_s, now_s):
        """(valid_until_s, available_from_s) of a lot of new points on the card."""
        program = self.programs.get(self.range_program.get(card.range_id))
        if program is None:
            return valid_until_s, now_s
        return (valid_until_s or policy_expiry(program, now_s),
                now_s + program.pending_days * 86400)

    def adjust_points(self, rq, payload, rp, now_s, now_yyyymm):
        POINT_LOTS = self.POINT_LOTS
        card = self.described_card(rq, rp)
        adjusted = (records.SYSTEM_OWNER_BASE + card.range_id, Slot.RANGE_POINTS_ADJUSTED)
        points = (card.card_id, Slot.CARD_POINTS)
        try:
            if card.status == records.CardStatus.CLOSED:
                raise Decline(Result.DECLINED_CARD_CLOSED)
            if rq.adjust_down:
                self.take_from_lots(POINT_LOTS, card, rq.amount_minor, now_s)
        except Decline:
            self.describe_lots(POINT_LOTS, rp)
            raise
        if rq.adjust_down:
            seq = self.post(rq.request_id, Op.ADJUST_POINTS, points, adjusted, POINTS,
                            rq.amount_minor, now_s, rq.reason)
        else:
            seq = self.credit_points(rq, card, rq.amount_minor, 0, Op.ADJUST_POINTS, now_s,
                                     Slot.RANGE_POINTS_ADJUSTED, rq.reason)
        self.approve(rq, rp, rq.amount_minor, seq)
        self.describe_lots(POINT_LOTS, rp)

    def transfer_points(self, rq, payload, rp, now_s, now_yyyymm):
        POINT_LOTS = self.POINT_LOTS
        card = self.described_card(rq, rp)
        try:
            bad = self.card_unusable(card, now_yyyymm, False)
            receiver = self.cards.get(self.pan_index.get(payload))
            if bad is None and (receiver is None or
                                self.card_unusable(receiver, now_yyyymm, True) is not None):
                bad = Result.DECLINED_RECEIVING_CARD_UNUSABLE
            if bad is None and self.points_owed(card) < 0:
                bad = Result.DECLINED_POINTS_OWED
            if bad is not None:
                raise Decline(bad)
            taken = []
            earliest = self.take_from_lots(POINT_LOTS, card, rq.amount_minor, now_s, taken)
        except Decline:
            self.describe_lots(POINT_LOTS, rp)
            raise
        self.activate(receiver, now_s)
        seq = self.post(rq.request_id, Op.TRANSFER_POINTS, (card.card_id, Slot.CARD_POINTS),
                        (receiver.card_id, Slot.CARD_POINTS), POINTS, rq.amount_minor, now_s)
        by_issuer = {}
        for issuer, amount in taken:
            by_issuer[issuer] = by_issuer.get(issuer, 0) + amount
        for part, (issuer, amount) in enumerate(by_issuer.items()):
            self.new_lot(POINT_LOTS, rq, receiver, amount, earliest, now_s, by_program=False,
                         part=part, issuer=issuer)
        self.origin_partner = 0
        self.approve(rq, rp, rq.amount_minor, seq)
        self.describe_lots(POINT_LOTS, rp)

    def set_program(self, rq, payload, rp, now_s, now_yyyymm):
        program = records.unpack_program(payload)
        for range_id in program.range_ids:
            if range_id not in self.ranges:
                raise Decline(Result.DECLINED_UNKNOWN_CARD_RANGE)
            if self.range_program.get(range_id, program.program_id) != program.program_id:
                raise Decline(Result.DECLINED_RANGE_IN_ANOTHER_PROGRAM)
        old = self.programs.get(program.program_id)
        for range_id in old.range_ids if old else ():
            del self.range_program[range_id]
        for range_id in program.range_ids:
            self.range_program[range_id] = program.program_id
        self.programs[program.program_id] = program
        self.approve(rq, rp, 0, 0)

    @staticmethod
    def valid_program(payload):
        program = records.unpack_program(payload)
        flags = payload[44]
        if not (program.program_id != 0 and program.expiry_kind <= ExpiryKind.YEAR_END_AFTER and
                -1440 <= program.utc_offset_min <= 1440 and program.pending_days <= 366 and
                payload[45] <= records.PROGRAM_TIERS_MAX and
                payload[46] <= records.PROGRAM_DISCOUNT_STEPS_MAX and
                program.birthday_window_days <= 31 and flags <= 7 and
                0 <= program.welcome_points <= CAP and 0 <= program.birthday_points <= CAP and
                program.point_value_millis <= 1_000_000_000):
            return False
        minimums = [t.minimum for t in program.tiers]
        if any(m > CAP for m in minimums) or minimums != sorted(set(minimums)) or \
                (minimums and minimums[0] <= 0) or \
                not all(1000 <= t.multiplier_permille <= records.MULTIPLIER_MAX_PERMILLE
                        for t in program.tiers):
            return False
        steps = program.discounts
        return all(0 <= s.minimum_spend_minor <= CAP and s.discount_bp <= 10000 for s in steps) and \
            all(a.minimum_spend_minor < b.minimum_spend_minor and a.discount_bp < b.discount_bp
                for a, b in zip(steps, steps[1:]))
