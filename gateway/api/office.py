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


def _check_period(m):
    if not 0 <= m.from_s < m.until_s:
        raise validation.InvalidArgument("until_s", "the period must be from_s <= t < until_s, "
                                         "Unix seconds")


def _next_batch(lines, pending: list, local, names) -> "office_pb2.TransactionBatch":
    """The next TransactionBatch of the listing's lines, filled up to BATCH_BYTES_MAX;
    pending[0]: a line read for the batch before that did not fit, or None."""
    batch, size = office_pb2.TransactionBatch(), 0
    while True:
        line, pending[0] = pending[0], None
        if line is None:
            tx = next(lines, None)
            if tx is None:
                return batch
            line = transactions.line_of(tx, local, names)
        line_size = line.ByteSize() + 4             # (its tag and length in the batch)
        if batch.lines and size + line_size > BATCH_BYTES_MAX:
            pending[0] = line
            return batch
        batch.lines.append(line)
        size += line_size


class OfficeService(Servicer, office_pb2_grpc.OfficeServiceServicer):
    SERVICE = office_pb2.DESCRIPTOR.services_by_name["OfficeService"].full_name

    def _card_id(self, pan_text: str):
        found = self.ops.balance(pan_text)
        return found[0].card_id if found is not None else None

    @rpc
    async def ListTransactions(self, request, context):
        # Batches are read and built in the servicer's pool, not on the event loop, so
        # that an export of millions of lines never holds up an authorization.
        query = transactions.query_of(request, self._card_id, self.ops.clock())
        local = transactions.LocalTime(self.ops.store)
        names = actor_names(self.ops.store.data_dir)
        lines = iter(transactions.lines(self.ops.store, query))
        pending = [None]                    # a line read that did not fit its batch
        loop = asyncio.get_running_loop()
        while True:
            batch = await loop.run_in_executor(self.executor, _next_batch, lines, pending, local, names)
            if not batch.lines:
                return
            yield batch

    @rpc
    def GetFleetInvoice(self, request, context):
        validation.config_id(request.contract_id, "contract_id")
        _check_period(request)
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
        loop = asyncio.get_running_loop()
        while True:
            found = await loop.run_in_executor(self.executor, events.page, self.ops.store, after)
            for event in found:
                yield event
            if found:
                after = found[-1].seq
            else:
                await asyncio.sleep(EVENT_POLL_S)

    @rpc
    def GetSalesAnalytics(self, request, context):
        store = self.ops.store
        _check_period(request)
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
        counted = set(range_ids)
        items = ((tx, parse_details(tx.details))
                 for tx in transactions.of_period(store, request.from_s, request.until_s)
                 if tx.range_id in counted)
        found = sales_analytics.analyze(items, zone, request.from_s, request.until_s,
                                        invoices.line_amount)
        return sales_analytics.message_of(found, first_range.currency if first_range else "",
                                          str(zone), store.read_partner_name, store.read_product_name)
