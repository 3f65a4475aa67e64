"""The fleet part of the reference model: catalog, restriction profiles, outlets,
contracts, usage counters and their checks, written for clarity (see ledger.pyx).
Mixed into reference_model.ReferenceLedger."""
import copy
import dataclasses
import datetime
import hashlib

from cardgate.fastcore import records
from cardgate.fastcore.records import CardStatus, Measure, Period, Prompt, Result, Slot

CONTRACT = records.CONTRACT_OWNER_BASE
MEASURES = list(Measure)
COUNTED = [Period.DAY, Period.WEEK, Period.MONTH, Period.LIFETIME]


class Decline(Exception):
    def __init__(self, result):
        self.result = result


@dataclasses.dataclass
class Usage:
    period_index: list = dataclasses.field(default_factory=lambda: [0, 0, 0, 0])
    used: list = dataclasses.field(default_factory=lambda: [[0, 0, 0] for _ in range(4)])
    pending: list = dataclasses.field(default_factory=lambda: [0, 0, 0])
    odometer: int = None


def period_indexes(local_s):
    day = local_s // 86400
    date = datetime.date(1970, 1, 1) + datetime.timedelta(days=day)
    return [day, (day + 3) // 7, date.year * 100 + date.month, 1]


class FleetRules:
    def init_fleet(self):
        self.catalog = {}         # product code -> fuel?
        self.profiles = {}        # profile_id -> records.Profile
        self.outlets = {}         # outlet code -> (region code, payload)
        self.contracts = {}       # contract_id -> records.Contract
        self.usage = {}           # card_id -> Usage
        self.reviews = {}         # request_id -> (card_id, time, limit_hit)

    # ---- whose value, what is available ----------------------------------------------

    @staticmethod
    def value_owner(card):
        return CONTRACT + card.contract_id if card.contract_id else card.card_id

    def credit_limit(self, card):
        return self.contracts[card.contract_id].credit_limit_minor if card.contract_id else 0

    @staticmethod
    def available(rp):
        return rp["balance_minor"] - rp["pending_minor"] + rp["credit_limit_minor"]

    # ---- the card's rules ------------------------------------------------------------

    def fleet_of(self, card, now_s):
        """(profile, usage rolled to now's periods, local time) or None."""
        profile_id = card.profile_id or (self.contracts[card.contract_id].profile_id
                                         if card.contract_id else 0)
        if not profile_id:
            return None
        profile = self.profiles[profile_id]
        local_s = now_s + profile.utc_offset_min * 60
        # A copy: like the core, the rolled counters are kept only when a sale is counted.
        usage = copy.deepcopy(self.usage.get(card.card_id, Usage()))
        for p, index in enumerate(period_indexes(local_s)):
            if usage.period_index[p] != index:
                usage.period_index[p] = index
                usage.used[p] = [0, 0, 0]
        return profile, usage, local_s

    def products_allowed(self, rq, profile):
        for code in rq.products:
            if not self.catalog[code] and not profile.nonfuel_allowed:
                return False
            if self.catalog[code] and profile.products is not None and code not in profile.products:
                return False
        if rq.products or rq.op == records.Op.PREAUTH:
            return True
        return profile.products is None and profile.nonfuel_allowed

    def place_allowed(self, outlet_code, profile):
        region = self.outlets.get(outlet_code, (0, b""))[0] if outlet_code else 0
        return any((outlet_code and place == outlet_code) or (region and place == region)
                   for place in profile.places)

    def fleet_rules(self, rq, fleet, rp):
        profile, _, local_s = fleet
        day, minute = local_s // 86400, local_s % 86400 // 60
        if not self.products_allowed(rq, profile):
            raise Decline(Result.DECLINED_PRODUCT_NOT_ALLOWED)
        if profile.places and not self.place_allowed(rq.outlet_code, profile):
            raise Decline(Result.DECLINED_OUTLET_NOT_ALLOWED)
        if profile.days_mask and not profile.days_mask >> ((day + 3) % 7) & 1:
            raise Decline(Result.DECLINED_TIME_NOT_ALLOWED)
        lo, hi = profile.minute_from, profile.minute_to
        if lo != hi and not (lo <= minute < hi if lo < hi else not hi <= minute < lo):
            raise Decline(Result.DECLINED_TIME_NOT_ALLOWED)
        present = ((Prompt.PIN if rq.pin_verifier is not None else 0)
                   | (Prompt.ODOMETER if rq.odometer is not None else 0)
                   | (Prompt.DRIVER if rq.driver_present else 0)
                   | (Prompt.VEHICLE if rq.vehicle_present else 0))
        missing = profile.prompts & ~present
        if missing:
            rp["prompts_missing"] = missing
            raise Decline(Result.DECLINED_PROMPT_REQUIRED)

    def fleet_limits(self, rq, fleet, rp, amount, volume):
        profile, usage, _ = fleet
        if rq.odometer is not None and usage.odometer is not None and rq.odometer < usage.odometer:
            raise Decline(Result.DECLINED_ODOMETER_BACKWARDS)
        room = {}
        for (period, measure), mx in sorted(profile.limits.items(),
                                            key=lambda kv: records.limit_index(*kv[0])):
            if (period, measure) in profile.soft:
                continue
            before = 0 if period == Period.TRANSACTION else \
                usage.used[period - 1][measure] + usage.pending[measure]
            if measure not in room or mx - before < room[measure][0]:
                room[measure] = (mx - before, records.limit_index(period, measure))
        this = [amount, volume, 1]
        preauth = rq.op == records.Op.PREAUTH
        for m in MEASURES:
            if m not in room:
                continue
            r, index = room[m]
            if m == Measure.VOLUME and preauth and this[1] == 0:
                if r <= 0:
                    rp["limit_hit"] = index + 1
                    raise Decline(Result.DECLINED_LIMIT_EXCEEDED)
                this[1] = r
            elif this[m] > max(r, 0):
                if rq.partial_ok and r > 0 and (m == Measure.MONEY or (m == Measure.VOLUME and preauth)):
                    this[m] = r
                else:
                    rp["limit_hit"] = index + 1
                    raise Decline(Result.DECLINED_LIMIT_EXCEEDED)
        return this[0], this[1]

    def count_usage(self, rq, card, fleet, amount, volume, reserve):
        _, usage, _ = fleet
        self.usage[card.card_id] = usage
        if reserve:
            for m, v in zip(MEASURES, (amount, volume, 1)):
                usage.pending[m] += v
        else:
            for p in range(4):
                for m, v in zip(MEASURES, (amount, volume, 1)):
                    usage.used[p][m] += v
        if rq.odometer is not None:
            usage.odometer = rq.odometer

    @staticmethod
    def flag_soft(fleet, amount, volume, rp):
        profile, usage, _ = fleet
        this = [amount, volume, 1]
        for (period, measure), mx in sorted(profile.limits.items(),
                                            key=lambda kv: records.limit_index(*kv[0])):
            if (period, measure) not in profile.soft:
                continue
            value = this[measure] if period == Period.TRANSACTION else \
                usage.used[period - 1][measure] + usage.pending[measure]
            if value > mx:
                rp.update(review=True, limit_hit=records.limit_index(period, measure) + 1)
                return

    def release_reservation(self, hold):
        if hold.counted:
            usage = self.usage[hold.card_id]
            for m, v in zip(MEASURES, (hold.held_minor, hold.volume_ml, 1)):
                usage.pending[m] -= v
                assert usage.pending[m] >= 0

    def uncount_purchase(self, card, o_rq, o_reply, now_s):
        usage = self.usage.get(card.card_id)
        if usage is None:
            return
        fleet = self.fleet_of(card, now_s)
        offset_s = fleet[0].utc_offset_min * 60 if fleet else 0
        time_s = self.journal[o_reply["journal_seq"] - 1].time_s
        for p, index in enumerate(period_indexes(time_s + offset_s)):
            if usage.period_index[p] == index:
                for m, v in zip(MEASURES, (o_reply["approved_minor"], o_rq.volume_ml, 1)):
                    usage.used[p][m] = max(0, usage.used[p][m] - v)

    # ---- configuration ---------------------------------------------------------------

    def define_product(self, rq, payload, rp, now_s, now_yyyymm):
        self.catalog[rq.product_code] = rq.product_kind == records.PRODUCT_KIND_FUEL
        self.approve(rq, rp, 0, 0)

    def set_profile(self, rq, payload, rp, now_s, now_yyyymm):
        profile = records.unpack_profile(payload)
        if any(code not in self.catalog for code in profile.products or ()):
            raise Decline(Result.REJECTED_UNKNOWN_PRODUCT)
        self.profiles[rq.profile_id] = profile
        self.approve(rq, rp, 0, 0)

    def define_outlet(self, rq, payload, rp, now_s, now_yyyymm):
        known = self.outlets.get(rq.outlet_code)
        if known is not None and known[1][8:76] != payload[8:76]:     # name and partner
            raise Decline(Result.DECLINED_OUTLET_CODE_TAKEN)
        partner = int.from_bytes(payload[72:76], "little")
        if partner and partner not in self.partner_names:
            raise Decline(Result.DECLINED_UNKNOWN_PARTNER)
        self.outlets[rq.outlet_code] = (int.from_bytes(payload[4:8], "little"), payload)
        self.approve(rq, rp, 0, 0)

    def set_contract(self, rq, payload, rp, now_s, now_yyyymm):
        if rq.profile_id and rq.profile_id not in self.profiles:
            raise Decline(Result.DECLINED_UNKNOWN_PROFILE)
        owner = CONTRACT + rq.contract_id
        known = self.contracts.get(rq.contract_id)
        if known is None:
            for slot in (Slot.CARD_VALUE, Slot.CARD_HELD):
                self.accounts[(owner, slot)] = self.new_account(rq.currency, no_overdraft=False)
        else:
            if known.currency != rq.currency:
                raise Decline(Result.DECLINED_CURRENCY_MISMATCH)
            if self.accounts[(owner, Slot.CARD_VALUE)].balance_minor + rq.credit_limit_minor < 0:
                raise Decline(Result.DECLINED_CREDIT_LIMIT_EXCEEDED)
        self.contracts[rq.contract_id] = records.Contract(rq.contract_id, rq.profile_id,
                                                          rq.currency, rq.credit_limit_minor)
        rp["currency"] = rq.currency
        self.approve(rq, rp, 0, 0)

    def assign_card(self, rq, payload, rp, now_s, now_yyyymm):
        card = self.open_card(rq, rp)
        if rq.profile_id and rq.profile_id not in self.profiles:
            raise Decline(Result.DECLINED_UNKNOWN_PROFILE)
        if rq.contract_id:
            contract = self.contracts.get(rq.contract_id)
            if contract is None:
                raise Decline(Result.DECLINED_UNKNOWN_CONTRACT)
            if contract.currency != rp["currency"]:
                raise Decline(Result.DECLINED_CURRENCY_MISMATCH)
        if rq.contract_id != card.contract_id and not card.contract_id:
            if self.accounts[(card.card_id, Slot.CARD_VALUE)].balance_minor or \
                    self.accounts[(card.card_id, Slot.CARD_HELD)].balance_minor:
                raise Decline(Result.DECLINED_BALANCE_NOT_ZERO)
        card.profile_id, card.contract_id = rq.profile_id, rq.contract_id
        if rq.contract_id and card.status == CardStatus.ISSUED:     # drawing on credit: live
            card.status, card.activated_s = CardStatus.ACTIVE, now_s
        self.approve(rq, rp, 0, 0)

    # ---- validity ----------------------------------------------------------------------

    def valid_extended(self, rq, payload):
        """A request's payload (size, digest), and the fleet and loyalty operations' own
        checks: whether it is valid, or None when the generic checks decide."""
        Op = records.Op
        if rq.op == Op.SET_RULES:
            return hashlib.sha256(payload).digest() == rq.payload_digest and \
                self.valid_rules(rq, payload)
        if rq.op == Op.SET_STAGE:
            return not payload and 0 <= rq.stage <= 2
        if rq.op == Op.ALLOCATE_SERIALS:
            return not payload and 0 < rq.serial_count <= records.SERIALS_PER_REQUEST_MAX
        if rq.op == Op.DEFINE_PARTNER:
            return not payload and rq.partner_id != 0 and rq.partner_name != b""
        if rq.op == Op.SET_MEMBER:
            month, day = divmod(rq.birthday_mmdd, 100)
            return not payload and (rq.birthday_mmdd == 0 or (1 <= month <= 12 and 1 <= day <= 31))
        if rq.op == Op.LOYALTY_SALE and not payload:
            return 0 < rq.amount_minor <= records.AMOUNT_MINOR_MAX and \
                0 <= rq.points_tendered <= records.AMOUNT_MINOR_MAX and \
                records.PaymentMethod.CASH <= rq.payment_method <= records.PaymentMethod.OTHER and \
                0 <= rq.volume_ml <= records.VOLUME_ML_MAX
        expected = {Op.SET_PROFILE: records.PROFILE_RECORD_SIZE,
                    Op.DEFINE_OUTLET: records.OUTLET_RECORD_SIZE,
                    Op.SET_PROGRAM: records.PROGRAM_RECORD_SIZE,
                    Op.TRANSFER_POINTS: 32, Op.REPLACE_CARD: 32,
                    Op.DEACTIVATE: 32 if rq.close_disposition == 2 else 0}.get(rq.op, 0)
        if rq.payload_size != expected or len(payload) != expected:
            return False
        if rq.op in (Op.TRANSFER_POINTS, Op.REPLACE_CARD, Op.DEACTIVATE) and payload:
            if hashlib.sha256(payload).digest()[:16] != rq.card_payload_digest or payload == rq.card_key:
                return False
        elif payload and hashlib.sha256(payload).digest() != rq.payload_digest:
            return False
        if rq.op in (Op.PURCHASE, Op.PREAUTH, Op.COMPLETE):
            if not 0 <= rq.volume_ml <= records.VOLUME_ML_MAX:
                return False
            if rq.odometer is not None and not 0 <= rq.odometer <= records.ODOMETER_MAX:
                return False
        if rq.op == Op.DEFINE_PRODUCT:
            return rq.product_code < 256 and rq.product_kind in (1, 2)
        if rq.op == Op.SET_PROFILE:
            profile = records.unpack_profile(payload)
            return rq.profile_id != 0 and profile.profile_id == rq.profile_id and \
                all(v >= 0 for v in profile.limits.values())
        if rq.op == Op.DEFINE_OUTLET:
            return rq.outlet_code != 0 and int.from_bytes(payload[:4], "little") == rq.outlet_code
        if rq.op == Op.SET_CONTRACT:
            return rq.contract_id != 0 and 0 <= rq.credit_limit_minor <= records.BALANCE_MINOR_MAX
        if rq.op in (Op.ASSIGN_CARD, Op.REPLACE_CARD):
            return True
        if rq.op == Op.DEACTIVATE:
            return rq.amount_minor == 0 and 0 <= rq.close_disposition <= 2
        if rq.op == Op.SET_PROGRAM:
            return self.valid_program(payload)
        return None
