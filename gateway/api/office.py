"""OfficeService: transactions listed for the people who run the network, over gRPC."""
from cardgate.gateway.api.authorization import Servicer, rpc
from cardgate.fastcore import records
from cardgate.gateway import validation
from cardgate.gateway.office import invoices, transactions
from cardgate.gateway.office.details import parse as parse_details
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

    @rpc
    def GetFleetInvoice(self, request, context):
        validation.config_id(request.contract_id, "contract_id")
        if not 0 <= request.from_s < request.until_s:
            raise validation.InvalidArgument("until_s", "the period must be from_s <= t < until_s, "
                                             "Unix seconds")
        store = self.ops.store
        query = transactions.Query(records.transaction_key(request.from_s), request.until_s,
                                   transactions.Filter(contract_id=request.contract_id),
                                   transactions.ROWS_UNBOUNDED)
        items = [(tx, parse_details(tx.details)) for tx in transactions.lines(store, query)]
        invoice = invoices.invoice_of(items, store.read_request)
        local = transactions.LocalTime(store)
        names = actor_names(store.data_dir)
        return invoices.message_of(invoice, request, local,
                                   lambda tx, details: transactions.line_of(tx, local, names, details),
                                   store.read_product_name)
