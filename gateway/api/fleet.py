"""FleetService: the operator's fleet configuration and reviews over gRPC."""
import uuid

from cardgate.fastcore import records
from cardgate.gateway.api.authorization import RESULT_MESSAGES, Servicer, limit_message, rpc
from cardgate.gateway.fleet import sales as fleet
from cardgate.gateway.security.pan import mask_parts
from cardgate.gateway.validation import InvalidArgument
from cardgate.v1 import common_pb2, fleet_pb2, fleet_pb2_grpc

FLAGGED_RESULTS_DEFAULT = 100
FLAGGED_RESULTS_MAX = 1000
OFFLINE_FLAGS = records.REVIEW_FLAG_OFFLINE_POSTED | records.REVIEW_FLAG_OFFLINE_REFUSED
OFFLINE_REVIEWS = {records.REVIEW_FLAG_OFFLINE_POSTED: fleet_pb2.OFFLINE_REVIEW_POSTED,
                   records.REVIEW_FLAG_OFFLINE_REFUSED: fleet_pb2.OFFLINE_REVIEW_REFUSED}


def _config_response(reply):
    return fleet_pb2.FleetConfigResponse(result_code=reply.result,
                                         message=RESULT_MESSAGES.get(reply.result, ""))


class FleetService(Servicer, fleet_pb2_grpc.FleetServiceServicer):
    SERVICE = fleet_pb2.DESCRIPTOR.services_by_name["FleetService"].full_name

    def __init__(self, operations, access):
        super().__init__(operations, access)
        self.fleet = fleet.FleetOperations(operations)

    @rpc
    def DefineProduct(self, request, context):
        return _config_response(self.fleet.define_product(request))

    @rpc
    def DefineOutlet(self, request, context):
        return _config_response(self.fleet.define_outlet(request))

    @rpc
    def SetRestrictionProfile(self, request, context):
        return _config_response(self.fleet.set_profile(request))

    @rpc
    def SetContract(self, request, context):
        return _config_response(self.fleet.set_contract(request))

    @rpc
    def AssignCard(self, request, context):
        return _config_response(self.fleet.assign_card(request))

    @rpc
    def GetFleetUsage(self, request, context):
        card = self.known_card(request.pan)[0]
        usage = self.ops.store.read_fleet_usage(card.card_id, self.ops.clock())
        response = fleet_pb2.GetFleetUsageResponse(
            masked_pan=mask_parts(card.pan_first6, card.pan_last4, card.pan_length),
            contract_id=card.contract_id)
        if usage is None:
            return response
        profile_id, counters = usage
        response.profile_id = profile_id
        for period, (money, volume, count) in zip((2, 3, 4, 5), counters.used):
            response.periods.add(period=period, money_minor=money, volume_ml=volume, count=count)
        money, volume, count = counters.pending
        response.reserved.CopyFrom(fleet_pb2.PeriodUsage(money_minor=money, volume_ml=volume,
                                                         count=count))
        if counters.odometer is not None:
            response.odometer_km = counters.odometer
        return response

    @rpc
    def ListFlagged(self, request, context):
        if request.max_results > FLAGGED_RESULTS_MAX:
            raise InvalidArgument("max_results", f"must be at most {FLAGGED_RESULTS_MAX}")
        found = self.ops.store.read_flagged(request.since_s,
                                            request.max_results or FLAGGED_RESULTS_DEFAULT)
        return fleet_pb2.ListFlaggedResponse(transactions=[
            fleet_pb2.FlaggedTransaction(
                request_id=str(uuid.UUID(bytes=request_id)),
                masked_pan=mask_parts(card.pan_first6, card.pan_last4, card.pan_length)
                if card else "",
                time_s=time_s,
                limit=limit_message(limit_hit, True, maximum) if limit_hit else None,
                forced_capture=bool(review & records.REVIEW_FLAG_FORCED_CAPTURE),
                offline=OFFLINE_REVIEWS.get(review & OFFLINE_FLAGS, 0),
                result_code=record.reply.result if record else 0,
                amount=common_pb2.Money(amount_minor=record.request.amount_minor,
                                        currency=record.request.currency) if record else None)
            for request_id, card, time_s, limit_hit, maximum, review, record in found])
