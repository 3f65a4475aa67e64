"""OfficeService: transactions listed for the people who run the network, over gRPC."""
from cardgate.gateway.api.authorization import Servicer, rpc
from cardgate.gateway.office import transactions
from cardgate.gateway.ops.admin_log import actor_names
from cardgate.v1 import office_pb2, office_pb2_grpc


class OfficeService(Servicer, office_pb2_grpc.OfficeServiceServicer):
    SERVICE = office_pb2.DESCRIPTOR.services_by_name["OfficeService"].full_name

    def _card_id(self, pan_text: str):
        found = self.ops.balance(pan_text)
        return found[0].card_id if found is not None else None

    @rpc
    async def ListTransactions(self, request, context):
        query = transactions.query_of(request, self._card_id, self.ops.clock())
        local = transactions.LocalTime(self.ops.store)
        names = actor_names(self.ops.store.data_dir)
        for tx in transactions.lines(self.ops.store, query):
            yield transactions.line_of(tx, local, names)
