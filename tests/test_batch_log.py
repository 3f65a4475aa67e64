"""The replicated log's entries, without NATS: every batch the writer commits, replayed in
order on a copy of the store taken before it, gives the same replies (digest) and the
same store, the gateway's own writes (encrypted card numbers, jobs) included; a replay
that would answer otherwise is caught and writes nothing."""
import shutil
import time
import uuid

import pytest

from cardgate.fastcore import records
from cardgate.gateway.api.operations import Operations
from cardgate.gateway.store import batch_log
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import BatchingWriter
from cardgate.v1 import authorization_pb2, common_pb2

from helpers import make_pan, snapshot

NOW_S = 1_790_000_000


def money(amount):
    return common_pb2.Money(amount_minor=amount, currency="EUR")


def rid():
    return str(uuid.uuid4())


@pytest.fixture
def primary_and_copy(tmp_path):
    primary = Store(tmp_path / "primary", sync=False)
    primary.close()
    shutil.copytree(tmp_path / "primary", tmp_path / "follower")   # the follower's bootstrap,
    shutil.copy(tmp_path / "primary.kek", tmp_path / "follower.kek")   # with the same KEK
    primary = Store(tmp_path / "primary", sync=False)
    entries = []
    clock = [NOW_S]
    writer = BatchingWriter(primary, clock=lambda: clock[0],
                            idle_tick_s=0.05,
                            log_batch=lambda entry, txn: entries.append(entry.encode())).start()
    yield Operations(primary, writer, clock=lambda: clock[0]), entries, clock, tmp_path
    writer.stop()
    primary.close()


def traffic(ops, clock, batches_logged):
    """A mixed flow of requests; batches_logged(): how many batches the log holds."""
    ops.create_range(rid(), 1, "627700", 16, "EUR", "gift")
    pans = [make_pan(n) for n in range(1, 4)]
    ops.issue_gift_cards(rid(), 1, [(pan, 209912) for pan in pans])   # PANs: an after-hook
    acceptor = common_pb2.Acceptor(merchant_id="m1", outlet_id="o1")
    for pan in pans:
        ops.submit_one(ops.pack_operation("load", authorization_pb2.LoadValueRequest(
            request_id=rid(), pan=pan, amount=money(100_00), acceptor=acceptor)), "load")
    sale = rid()
    ops.submit_one(ops.pack_operation("purchase", authorization_pb2.PurchaseRequest(
        request_id=sale, pan=pans[0], amount=money(30_00), acceptor=acceptor)), sale)
    hold = rid()
    ops.submit_one(ops.pack_operation("preauthorize", authorization_pb2.PreAuthorizeRequest(
        request_id=hold, pan=pans[1], amount=money(50_00), acceptor=acceptor)), hold)
    ops.submit_one(ops.pack_operation("refund", authorization_pb2.RefundRequest(
        request_id=rid(), pan=pans[0], amount=money(5_00), original_request_id=sale,
        acceptor=acceptor)), "refund")
    clock[0] += 3600                    # the hold ends by time in the next batch
    ops.submit_one(ops.pack_operation("reverse", authorization_pb2.ReverseRequest(
        request_id=rid(), original_request_id=rid(), acceptor=acceptor)), "blind reversal")
    ops.earn_points(rid(), pans[2], 70)
    second = rid()
    ops.submit_one(ops.pack_operation("preauthorize", authorization_pb2.PreAuthorizeRequest(
        request_id=second, pan=pans[2], amount=money(10_00), acceptor=acceptor)), second)
    logged = batches_logged()
    clock[0] += 3600                    # with no traffic, the idle writer ends the hold:
    deadline = time.monotonic() + 10    # a batch of no requests, logged like any other
    while batches_logged() == logged and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batches_logged() == logged + 1


@pytest.fixture
def logged_traffic(primary_and_copy):
    """(operations, the traffic's entries decoded, the follower's store at the start)."""
    ops, entries, clock, tmp_path = primary_and_copy
    traffic(ops, clock, lambda: len(entries))
    follower = Store(tmp_path / "follower", sync=False)
    yield ops, [batch_log.decode(data) for data in entries], follower
    follower.close()


def test_a_follower_replaying_the_log_ends_with_the_same_store(logged_traffic):
    ops, decoded, follower = logged_traffic
    assert decoded[-1].steps == [(batch_log.CORE_RUN, b"")]      # the idle writer's
    assert [e.batch_no for e in decoded] == list(range(1, len(decoded) + 1))
    assert any(step[0] == batch_log.WRITE for e in decoded for step in e.steps)
    for entry in decoded:
        batch_log.apply_entry(follower, entry)
    assert snapshot(follower) == snapshot(ops.store)
    assert gateway_dbs(follower) == gateway_dbs(ops.store)    # encrypted PANs included


def test_a_replay_that_answers_otherwise_is_caught_and_writes_nothing(logged_traffic):
    _, decoded, follower = logged_traffic
    sale = 5                          # range, issue, three loads, then the purchase
    for entry in decoded[:sale]:
        batch_log.apply_entry(follower, entry)
    tampered = decoded[sale]          # as if the core had read a clock of its own:
    tampered.now_s += 100 * 365 * 86400         # the card has expired by then
    tampered.now_yyyymm = 212601
    before = snapshot(follower)
    with pytest.raises(batch_log.LogError, match="digest mismatch"):
        batch_log.apply_entry(follower, tampered)
    assert snapshot(follower) == before


def test_entries_round_trip_and_refuse_damage():
    entry = batch_log.Entry(7, NOW_S, 202609, 1800, digest=b"\x01" * 32)
    entry.core_run(b"\x02" * records.REQUEST_SIZE)
    entry.write(b"pans", b"\x00" * 8, b"sealed")
    entry.write(b"jobs", b"k", None)
    data = entry.encode()
    assert batch_log.decode(data) == entry
    for damaged in (data[:-1], data + b"\x00", b"XXXX" + data[4:], data[:20]):
        with pytest.raises(batch_log.LogError):
            batch_log.decode(damaged)


def gateway_dbs(store):
    with store.env.begin() as txn:
        return {name: list(txn.cursor(db=db)) for name, db in store.databases_by_name().items()}
