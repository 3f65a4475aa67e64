"""LoyaltyService: points earned in lots that expire, redeemed earliest-expiring first,
and the warnings operators send before points expire."""
from cardgate.fastcore.records import ExpiryKind
from cardgate.v1 import loyalty_pb2, loyalty_pb2_grpc

from .pan import mask_parts
from .service import RESULT_MESSAGES, Servicer, authorization_message, rpc, takes_off
from .validation import InvalidArgument

WITHIN_DAYS_MAX = 3650
EXPIRING_PAGE_ROWS = 1000      # lots read per read transaction while streaming


class LoyaltyService(Servicer, loyalty_pb2_grpc.LoyaltyServiceServicer):
    SERVICE = loyalty_pb2.DESCRIPTOR.services_by_name["LoyaltyService"].full_name

    @rpc
    def SetProgram(self, request, context):
        if not 1 <= request.expiry_kind <= len(ExpiryKind):
            raise InvalidArgument("expiry_kind", "must be POINTS_EXPIRY_KIND_NEVER, _DAYS_AFTER, "
                                  "_MONTH_END_AFTER or _YEAR_END_AFTER")
        reply = self.ops.set_program(request.request_id, request.program_id,
                                     ExpiryKind(request.expiry_kind - 1), request.expiry_n,
                                     request.pending_days, request.utc_offset_min,
                                     list(request.range_ids))
        return loyalty_pb2.SetProgramResponse(result_code=reply.result,
                                              message=RESULT_MESSAGES.get(reply.result, ""))

    @rpc
    def EarnPoints(self, request, context):
        reply = self.ops.earn_points(request.request_id, request.pan, request.points,
                                     request.valid_until_s)
        return loyalty_pb2.EarnPointsResponse(authorization=authorization_message(reply))

    @rpc
    def RedeemPoints(self, request, context):
        reply = self.ops.redeem_points(request.request_id, request.pan, request.points)
        return loyalty_pb2.RedeemPointsResponse(authorization=authorization_message(reply))

    @rpc
    def AdjustPoints(self, request, context):
        reply = self.ops.adjust_points(request.request_id, request.pan, request.points,
                                       takes_off(request.direction), request.reason,
                                       self.actor_of(context))
        return loyalty_pb2.AdjustPointsResponse(authorization=authorization_message(reply))

    @rpc
    def TransferPoints(self, request, context):
        reply = self.ops.transfer_points(request.request_id, request.pan, request.to_pan,
                                         request.points, self.actor_of(context))
        return loyalty_pb2.TransferPointsResponse(authorization=authorization_message(reply))

    @rpc
    def GetPoints(self, request, context):
        card = self.known_card(request.pan, context)[0]
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
