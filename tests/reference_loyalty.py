"""The loyalty part of the reference model: programs, their expiry policy and returns
window, written for clarity (see ledger.pyx). Mixed into reference_model.ReferenceLedger."""
import calendar
import datetime

from cardgate.fastcore import records
from cardgate.fastcore.records import ExpiryKind, Result

from reference_fleet import Decline


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
    def init_loyalty(self):
        self.programs = {}        # program_id -> records.Program
        self.range_program = {}   # range_id -> program_id

    def lot_terms(self, card, rq, now_s):
        """(valid_until_s, available_from_s) of a lot of points earned now on the card."""
        program = self.programs.get(self.range_program.get(card.range_id))
        if program is None:
            return rq.valid_until_s, now_s
        return (rq.valid_until_s or policy_expiry(program, now_s),
                now_s + program.pending_days * 86400)

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
