"""OfficeService: transactions, invoices, analytics and events for the people who run the
network and the systems around it, over gRPC."""
import asyncio

import grpc

from cardgate.gateway import limits, validation
from cardgate.gateway.api.authorization import Refused, Servicer, rpc
from cardgate.gateway.office import events, invoices, sales_analytics, transactions
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

    @rpc
    def GetSalesAnalytics(self, request, context):
        store = self.ops.store
        if not 0 <= request.from_s < request.until_s:
            raise validation.InvalidArgument("until_s", "the period must be from_s <= t < until_s, "
                                             "Unix seconds")
        if bool(request.program_id) == bool(request.range_id):
            raise validation.InvalidArgument("program_id", "name a program or a range_id, one of them")
        if request.program_id:
            found = store.read_program(request.program_id)
            if found is None:
                raise Refused(grpc.StatusCode.NOT_FOUND, f"program_id: no program {request.program_id}")
            range_ids, zone_id, offset = found[0].range_ids, found[0].zone_id, found[0].utc_offset_min
        else:
            card_range = store.read_range(request.range_id)
            if card_range is None:
                raise Refused(grpc.StatusCode.NOT_FOUND, f"range_id: no card range {request.range_id}")
            range_ids, zone_id, offset = (request.range_id,), card_range.zone_id, card_range.utc_offset_min
        zone = transactions.zone_of(store, zone_id, offset)
        first_range = store.read_range(range_ids[0]) if range_ids else None
        items = ((tx, parse_details(tx.details))
                 for tx in transactions.of_period(store, request.from_s, request.until_s))
        found = sales_analytics.analyze(items, set(range_ids), zone, request.from_s,
                                        request.until_s, invoices.line_amount)
        return sales_analytics.message_of(found, first_range.currency if first_range else "",
                                          str(zone), store.read_partner_name, store.read_product_name)
