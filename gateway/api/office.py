"""OfficeService: transactions, invoices and events for the people who run the network and
the systems around it, over gRPC."""
import asyncio

from cardgate.gateway import limits, validation
from cardgate.gateway.api.authorization import Servicer, rpc
from cardgate.gateway.office import events, invoices, transactions
from cardgate.gateway.office.details import parse as parse_details
from cardgate.gateway.ops.admin_log import actor_names
from cardgate.v1 import office_pb2, office_pb2_grpc

# A TransactionBatch is filled up to this many bytes (the message limit is
# limits.MESSAGE_BYTES_MAX; a line is far smaller than what is left).
BATCH_BYTES_MAX = limits.MESSAGE_BYTES_MAX * 3 // 4
EVENT_POLL_S = 0.05         # a watcher at the journal's end looks for new entries this often


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
        batch, size = office_pb2.TransactionBatch(), 0
        for tx in transactions.lines(self.ops.store, query):
            line = transactions.line_of(tx, local, names)
            line_size = line.ByteSize() + 4         # (its tag and length in the batch)
            if batch.lines and size + line_size > BATCH_BYTES_MAX:
                yield batch
                batch, size = office_pb2.TransactionBatch(), 0
            batch.lines.append(line)
            size += line_size
        if batch.lines:
            yield batch

    @rpc
    def GetFleetInvoice(self, request, context):
        validation.config_id(request.contract_id, "contract_id")
        if not 0 <= request.from_s < request.until_s:
            raise validation.InvalidArgument("until_s", "the period must be from_s <= t < until_s, "
                                             "Unix seconds")
        store = self.ops.store
        items = [(tx, parse_details(tx.details)) for tx in transactions.of_period(
            store, request.from_s, request.until_s,
            transactions.Filter(contract_id=request.contract_id))]
        invoice = invoices.invoice_of(items, store.read_request)
        local = transactions.LocalTime(store)
        names = actor_names(store.data_dir)
        return invoices.message_of(invoice, request, local,
                                   lambda tx, details: transactions.line_of(tx, local, names, details),
                                   store.read_product_name)

    @rpc
    async def WatchEvents(self, request, context):
        after = request.after_seq
        while True:
            found = events.page(self.ops.store, after)
            for event in found:
                yield event
            if found:
                after = found[-1].seq
            else:
                await asyncio.sleep(EVENT_POLL_S)
