"""The loyalty part of the reference model: programs, their expiry policy and returns
window, written for clarity (see ledger.pyx). Mixed into reference_model.ReferenceLedger."""
import calendar
import datetime

from cardgate.fastcore import records
from cardgate.fastcore.records import ExpiryKind, Op, Result, Slot

from reference_fleet import Decline

POINTS = records.POINTS_ASSET


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
            seq = self.post(rq.request_id, Op.ADJUST_POINTS, adjusted, points, POINTS,
                            rq.amount_minor, now_s, rq.reason)
            self.new_lot(POINT_LOTS, rq, card, rq.amount_minor, 0, now_s)
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
            if bad is not None:
                raise Decline(bad)
            earliest = self.take_from_lots(POINT_LOTS, card, rq.amount_minor, now_s)
        except Decline:
            self.describe_lots(POINT_LOTS, rp)
            raise
        self.activate(receiver, now_s)
        seq = self.post(rq.request_id, Op.TRANSFER_POINTS, (card.card_id, Slot.CARD_POINTS),
                        (receiver.card_id, Slot.CARD_POINTS), POINTS, rq.amount_minor, now_s)
        self.new_lot(POINT_LOTS, rq, receiver, rq.amount_minor, earliest, now_s, by_program=False)
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
        return program.program_id != 0 and program.expiry_kind <= ExpiryKind.YEAR_END_AFTER and \
            -1440 <= program.utc_offset_min <= 1440 and program.pending_days <= 366
