"""LoyaltyService: programs and their earn rules, sales that earn, points in lots that
expire (with warning), redeemed earliest-expiring first, members' standing, statements
in words, and settlement between the partners of a coalition."""
import grpc

from cardgate.fastcore.records import Op, PaymentMethod
from cardgate.gateway import zones
from cardgate.gateway.api.authorization import (RESULT_MESSAGES, Servicer, authorization_message,
                                                rpc, takes_off)
from cardgate.gateway.fleet.sales import acceptor_codes
from cardgate.gateway.office import transactions
from cardgate.gateway.office.money_settlement import settle_money
from cardgate.gateway.loyalty import (analytics, config as loyalty_config, settlement,
                                      words as loyalty_words)
from cardgate.gateway.loyalty.answers import standing
from cardgate.gateway.security import acting
from cardgate.gateway.security.access import Refused
from cardgate.gateway.security.pan import mask_parts
from cardgate.gateway.validation import InvalidArgument
from cardgate.v1 import loyalty_pb2, loyalty_pb2_grpc

WITHIN_DAYS_MAX = 3650
EXPIRING_PAGE_ROWS = 1000      # lots read per read transaction while streaming
STATEMENT_LINES_DEFAULT = 100
STATEMENT_LINES_MAX = 1000


def _config_response(message_type, reply):
    return message_type(result_code=reply.result, message=RESULT_MESSAGES.get(reply.result, ""))


def _where(request) -> dict:
    return acceptor_codes(request.acceptor)


def _money_settlement(store, request, own: int) -> list:
    """MoneySettlement messages of a GetSettlementRequest's period; own: the partner of a
    partner's operator (0: any), who sees its own line and transfers only."""
    return [loyalty_pb2.MoneySettlement(
        currency=settled.currency,
        partners=[loyalty_pb2.PartnerMoney(partner_name=store.read_partner_name(row.partner_id),
                                           **row._asdict())
                  for row in settled.partners if not own or row.partner_id == own],
        transfers=[loyalty_pb2.MoneyTransfer(from_partner_id=a, to_partner_id=b, amount_minor=v)
                   for a, b, v in settled.transfers if not own or own in (a, b)])
        for settled in settle_money(transactions.of_period(store, request.from_s, request.until_s))]


class LoyaltyService(Servicer, loyalty_pb2_grpc.LoyaltyServiceServicer):
    SERVICE = loyalty_pb2.DESCRIPTOR.services_by_name["LoyaltyService"].full_name

    @rpc
    def SetProgram(self, request, context):
        reply = self.ops.set_config(Op.SET_PROGRAM, request.request_id,
                                    loyalty_config.program_payload(request),
                                    zone_requests=zones.zone_fields(request.time_zone,
                                                                    request.utc_offset_min)[1])
        return _config_response(loyalty_pb2.SetProgramResponse, reply)

    @rpc
    def DefinePartner(self, request, context):
        reply = self.ops.define_partner(request.request_id, request.partner_id, request.name,
                                        request.shares_requests)
        return _config_response(loyalty_pb2.DefinePartnerResponse, reply)

    @rpc
    def SetEarnRules(self, request, context):
        reply = self.ops.set_config(Op.SET_RULES, request.request_id,
                                    loyalty_config.rules_payload(request), request.program_id)
        return _config_response(loyalty_pb2.SetEarnRulesResponse, reply)

    @rpc
    async def RecordSale(self, request, context):
        if request.payment_method not in (PaymentMethod.CASH, PaymentMethod.BANK_CARD,
                                          PaymentMethod.OTHER):
            raise InvalidArgument("payment_method", "must be PAYMENT_METHOD_CASH, _BANK_CARD or "
                                  "_OTHER (a sale paid with the card itself is a Purchase)")
        packed = self.ops.pack_loyalty_sale(request, request.payment_method)
        reply = await self.ops.submit_one_async(packed, request.request_id)
        return loyalty_pb2.RecordSaleResponse(authorization=authorization_message(reply, self.ops.store))

    @rpc
    def SetMember(self, request, context):
        reply = self.ops.set_member(request.request_id, request.pan, request.birth_month,
                                    request.birth_day)
        return _config_response(loyalty_pb2.SetMemberResponse, reply)

    @rpc
    def GetMember(self, request, context):
        card = self.known_card(request.pan)[0]
        store = self.ops.store
        found = store.read_membership(card, self.ops.clock())
        if found is None:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "pan: the card's range is in no "
                          "loyalty program")
        program, member, (tier, rolling_total, discount_bp) = found
        now = standing(program, member, tier, rolling_total, discount_bp)
        return loyalty_pb2.GetMemberResponse(
            masked_pan=mask_parts(card.pan_first6, card.pan_last4, card.pan_length),
            program_id=program.program_id, tier=loyalty_words.tier_name(program, now.tier),
            rolling_total=now.rolling_total, next_tier=now.next_tier,
            to_next_tier=now.to_next_tier, tier_review_s=now.tier_review_s,
            lifetime_spend_minor=member.lifetime_spend_minor if member else 0,
            discount_bp=now.discount_bp, next_discount_bp=now.next_discount_bp,
            to_next_discount_minor=now.to_next_discount, points=store.read_points(card.card_id),
            currency=store.read_range(card.range_id).currency)

    @rpc
    def GetStatement(self, request, context):
        if request.limit > STATEMENT_LINES_MAX:
            raise InvalidArgument("limit", f"must be 0 to {STATEMENT_LINES_MAX}, got {request.limit}")
        card = self.known_card(request.pan)[0]
        store = self.ops.store
        found = store.read_program_of_range(card.range_id)
        program = found[0] if found else None
        currency = store.read_range(card.range_id).currency
        outlets = {}
        lines = []
        for line, entry in store.read_points_lines(card.card_id, request.limit or STATEMENT_LINES_DEFAULT):
            if line.outlet_code and line.outlet_code not in outlets:
                outlets[line.outlet_code] = store.read_outlet(line.outlet_code)
            lines.append(loyalty_pb2.StatementLine(
                time_s=entry.time_s, points=line.points,
                description=loyalty_words.describe_line(line, entry, program,
                                                        outlets.get(line.outlet_code), currency)))
        return loyalty_pb2.GetStatementResponse(
            masked_pan=mask_parts(card.pan_first6, card.pan_last4, card.pan_length),
            points=store.read_points(card.card_id), lines=lines)

    def _program_period(self, request, context):
        """(program, its currency) of a request naming a program and a period."""
        if request.from_s < 0 or request.until_s <= request.from_s:
            raise InvalidArgument("until_s", "the period must be [from_s, until_s) with from_s >= 0 "
                                  "and until_s after it")
        found = self.ops.store.read_program(request.program_id)
        if found is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"program_id: no program {request.program_id}")
        program = found[0]
        first_range = self.ops.store.read_range(program.range_ids[0]) if program.range_ids else None
        return program, first_range.currency if first_range else ""

    @rpc
    def GetProgramAnalytics(self, request, context):
        program, currency = self._program_period(request, context)
        store = self.ops.store
        with store.env.begin() as txn:
            figures = analytics.analyze(store, txn, program, request.from_s, request.until_s)
        return loyalty_pb2.ProgramAnalytics(currency=currency, **figures._asdict())

    @rpc
    def GetSettlement(self, request, context):
        program, currency = self._program_period(request, context)
        store = self.ops.store
        with store.env.begin() as txn:
            report = settlement.settle(store, txn, program, request.from_s, request.until_s)
        # A partner's operator (scope.py) sees its own line and what it pays or is paid.
        identity = acting.CALLER.get()
        own = identity.partner_id if identity is not None else 0
        return loyalty_pb2.GetSettlementResponse(
            currency=currency,
            partners=[loyalty_pb2.PartnerSettlement(partner_name=store.read_partner_name(row.partner_id),
                                                    **row._asdict()) for row in report.partners
                      if not own or row.partner_id == own],
            transfers=[loyalty_pb2.PartnerTransfer(from_partner_id=a, to_partner_id=b, points=p,
                                                   amount_minor=v) for a, b, p, v in report.transfers
                       if not own or own in (a, b)],
            money=_money_settlement(store, request, own))

    @rpc
    def EarnPoints(self, request, context):
        reply = self.ops.earn_points(request.request_id, request.pan, request.points,
                                     request.valid_until_s, _where(request))
        return loyalty_pb2.EarnPointsResponse(authorization=authorization_message(reply))

    @rpc
    def RedeemPoints(self, request, context):
        reply = self.ops.redeem_points(request.request_id, request.pan, request.points,
                                       _where(request))
        return loyalty_pb2.RedeemPointsResponse(authorization=authorization_message(reply))

    @rpc
    def ReservePoints(self, request, context):
        reply = self.ops.reserve_points(request.request_id, request.pan, request.points,
                                        _where(request))
        return loyalty_pb2.ReservePointsResponse(authorization=authorization_message(reply),
                                                 hold_id=request.request_id)

    @rpc
    def ConfirmPoints(self, request, context):
        reply = self.ops.settle_points(request.request_id, request.pan, request.hold_id,
                                       request.points, _where(request))
        return loyalty_pb2.ConfirmPointsResponse(authorization=authorization_message(reply))

    @rpc
    def ReleasePoints(self, request, context):
        reply = self.ops.settle_points(request.request_id, request.pan, request.hold_id,
                                       where=_where(request))
        return loyalty_pb2.ReleasePointsResponse(authorization=authorization_message(reply))

    @rpc
    def AdjustPoints(self, request, context):
        reply = self.ops.adjust_points(request.request_id, request.pan, request.points,
                                       takes_off(request.direction), request.reason)
        return loyalty_pb2.AdjustPointsResponse(authorization=authorization_message(reply))

    @rpc
    def TransferPoints(self, request, context):
        # A terminal's transfer is the cardholder's, with the giving card's PIN (the core
        # checks it); an operator's needs none.
        at_terminal = not self.caller_may("operator")
        reply = self.ops.transfer_points(request.request_id, request.pan, request.to_pan,
                                         request.points, request.pin,
                                         _where(request) if at_terminal else None)
        return loyalty_pb2.TransferPointsResponse(authorization=authorization_message(reply))

    @rpc
    def GetPoints(self, request, context):
        card = self.known_card(request.pan)[0]
        store = self.ops.store
        expiring, pending = store.read_point_lots(card.card_id, self.ops.clock())
        return loyalty_pb2.GetPointsResponse(
            masked_pan=mask_parts(card.pan_first6, card.pan_last4, card.pan_length),
            points=store.read_points(card.card_id), pending_points=pending,
            expiring=[loyalty_pb2.PointsExpiry(valid_until_s=t, points=p) for t, p in expiring])

    @rpc
    async def ListExpiringPoints(self, request, context):
        if not 1 <= request.within_days <= WITHIN_DAYS_MAX:
            raise InvalidArgument("within_days", f"must be 1 to {WITHIN_DAYS_MAX}, got {request.within_days}")
        now_s = self.ops.clock()
        after = now_s.to_bytes(8, "big")
        while after is not None:
            rows, after = self.ops.store.read_points_expiring_page(
                after, now_s + request.within_days * 86400, EXPIRING_PAGE_ROWS)
            for card, points, valid_until_s in rows:
                yield loyalty_pb2.ExpiringPoints(
                    masked_pan=mask_parts(card.pan_first6, card.pan_last4, card.pan_length),
                    points=points, valid_until_s=valid_until_s)
