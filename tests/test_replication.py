"""The committed-batch log on a real three-node NATS JetStream cluster: a primary
publishes every batch before it commits; a follower that replays the stream ends with the
same store; a deposed primary's batch is refused by the stream itself and never
acknowledged; one NATS node lost, the primary goes on."""
import itertools
import shutil
import time
import uuid

import pytest

from cardgate.gateway.api.operations import Operations
from cardgate.gateway.store import replication
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import BatchingWriter, StoreFailed
from cardgate.v1 import authorization_pb2, common_pb2

from benchmarks.nats_cluster import NatsCluster
from test_batch_log import NOW_S, gateway_dbs, money, rid, traffic
from helpers import make_pan, snapshot


@pytest.fixture
def cluster(tmp_path):
    nats = NatsCluster(tmp_path / "nats")
    yield nats
    nats.stop()


def node(tmp_path, name, cluster, clock):
    """(store, its stream link, writer publishing to the stream, operations)."""
    store = Store(tmp_path / name, sync=False)
    link = replication.JetStreamLog(cluster.servers, store)
    writer = BatchingWriter(store, clock=lambda: clock[0], idle_tick_s=0.05,
                            log_batch=link.publish).start()
    return store, link, writer, Operations(store, writer, clock=lambda: clock[0])


def bootstrap(tmp_path, source, name):
    """A follower's data directory: a copy of a store before any batch, with its KEK."""
    shutil.copytree(tmp_path / source, tmp_path / name)
    shutil.copy(tmp_path / f"{source}.kek", tmp_path / f"{name}.kek")


def test_a_follower_replaying_the_stream_has_the_primarys_store(tmp_path, cluster):
    clock = [NOW_S]
    Store(tmp_path / "a", sync=False).close()
    bootstrap(tmp_path, "a", "b")
    store, link, writer, ops = node(tmp_path, "a", cluster, clock)
    try:
        started = time.perf_counter()
        traffic(ops, clock, lambda: replication.applied_seq(store))
        published = replication.applied_seq(store)
        assert published >= 10, published
        follower = Store(tmp_path / "b", sync=False)
        follower_link = replication.JetStreamLog(cluster.servers, follower)
        try:
            assert follower_link.follow(until_seq=published) == published
            assert snapshot(follower) == snapshot(store)
            assert gateway_dbs(follower) == gateway_dbs(store)
        finally:
            follower_link.close()
            follower.close()
        assert time.perf_counter() - started < 60
    finally:
        writer.stop()
        link.close()
        store.close()


def test_a_deposed_primary_is_fenced_by_the_stream(tmp_path, cluster):
    clock = [NOW_S]
    Store(tmp_path / "a", sync=False).close()
    bootstrap(tmp_path, "a", "b")
    a_store, a_link, a_writer, a_ops = node(tmp_path, "a", cluster, clock)
    b_store, b_link, b_writer, b_ops = node(tmp_path, "b", cluster, clock)
    try:
        a_ops.create_range(rid(), 1, "627700", 16, "EUR", "gift")     # A is the primary
        pan = make_pan(1)
        a_ops.issue_gift_cards(rid(), 1, [(pan, 209912)])
        # B never followed: it still believes sequence 0 is the last. Its batch is refused
        # by the stream, aborted, and its caller told to retry; nothing of it is stored.
        before = snapshot(b_store)
        with pytest.raises(StoreFailed, match="no longer the primary"):
            b_ops.create_range(rid(), 2, "627701", 16, "EUR", "other")
        assert snapshot(b_store) == before and b_link.deposed
        # A goes on.
        loaded = a_ops.submit_one(a_ops.pack_operation("load", authorization_pb2.LoadValueRequest(
            request_id=rid(), pan=pan, amount=money(10_00),
            acceptor=common_pb2.Acceptor(merchant_id="m1", outlet_id="o1"))), "load")
        assert loaded.approved_minor == 10_00
    finally:
        for writer, link, store in ((a_writer, a_link, a_store), (b_writer, b_link, b_store)):
            writer.stop()
            link.close()
            store.close()


def test_the_primarys_lease_lapses_when_it_stops_renewing_and_another_takes_it(tmp_path, cluster):
    stores = [Store(tmp_path / name, sync=False) for name in ("a", "b")]
    links = [replication.JetStreamLog(cluster.servers, s) for s in stores]
    try:
        a, b = (replication.Lease(link, name, ttl_s=2.0) for link, name in zip(links, "ab"))
        assert a.acquire() and not b.acquire()
        assert a.holder() == b.holder() == "a"
        for _ in range(3):                          # renewed: it stays, past its TTL
            time.sleep(1.0)
            assert a.renew() and not b.acquire()
        started = time.monotonic()
        while not b.acquire():                      # a stops renewing (frozen, dead)
            assert time.monotonic() - started < 10
            time.sleep(0.1)
        lapsed_s = time.monotonic() - started
        assert 1.5 <= lapsed_s <= 4.5, lapsed_s
        assert b.holder() == "b" and not a.renew()  # a learns it lost the lease
    finally:
        for link, store in zip(links, stores):
            link.close()
            store.close()


def test_a_follower_takes_over_when_the_primary_stops_and_has_every_acknowledged_request(
        tmp_path, cluster):
    """Two gateways on one stream: the first holds the lease and serves; the second follows
    and refuses writes naming the primary. The primary stops renewing (as if dead): the
    follower takes over within the lease's time and approves; every request the first
    acknowledged is on the second exactly once, with the same answer."""
    from conftest import LiveGateway
    from cardgate.fastcore import records
    import grpc

    Store(tmp_path / "a", sync=False).close()
    bootstrap(tmp_path, "a", "b")
    first = LiveGateway(tmp_path / "a", replicate=cluster.servers, node_id="a", lease_ttl_s=1.5)
    try:
        wait_for(lambda: first.gateway.node.role == "primary", 20)
        second = LiveGateway(tmp_path / "b", replicate=cluster.servers, node_id="b",
                             lease_ttl_s=1.5)
        try:
            from helpers import create_range, issue, load, purchase
            create_range(first)
            pan = make_pan(1)
            issue(first, [pan])
            answers = {}
            for _ in range(5):
                rid_ = rid()
                answers[rid_] = load(first, pan, 2_00, request_id=rid_)
            # The follower refuses writes, naming the primary, and serves reads.
            wait_for(lambda: second.gateway.writer.primary_of == "a", 10)
            wait_for(lambda: second.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan))
                     .balance.balance_minor == 10_00, 10)
            with pytest.raises(grpc.RpcError) as refused:
                load(second, pan, 1_00)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "the primary is a" in refused.value.details()
            # The primary stops renewing its lease (dead, as far as the group can tell).
            stopped_at = time.monotonic()
            first.gateway.node._stopping.set()
            wait_for(lambda: second.gateway.node.role == "primary", 20)
            took_s = time.monotonic() - stopped_at
            assert took_s < 10, took_s
            for rid_, answer in answers.items():     # retried on the new primary: answered
                again = load(second, pan, 2_00, request_id=rid_)    # as the first time
                assert (again.result_code, again.approval_code, again.journal_seq) == \
                    (answer.result_code, answer.approval_code, answer.journal_seq)
            assert purchase(second, pan, 1_00).result_code == records.Result.APPROVED
            assert second.gateway.store.read_card(
                second.gateway.store.pan_key.card_key(pan))[1].balance_minor == 9_00
        finally:
            second.close()
    finally:
        first.close()


def wait_for(condition, timeout_s):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Group:
    """Real processes: `cardgate serve --replicate` nodes started from copies of one data
    directory, on one NATS cluster, with a terminal's and an operator's certificates."""

    def __init__(self, tmp_path, cluster, names=("a", "b")):
        from cardgate.gateway.security.pki import Pki
        self.tmp_path, self.cluster = tmp_path, cluster
        self.data = {name: tmp_path / name for name in names}
        Store(self.data[names[0]], sync=False).close()
        pki = Pki(self.data[names[0]])
        pki.ensure()
        self.certs = tmp_path / "certs"
        pki.issue("terminal", "t", self.certs, merchant_id="m1", outlet_id="o1")
        pki.issue("operator", "op", self.certs)
        for name in names[1:]:
            bootstrap(tmp_path, names[0], name)
        self.nodes = {}

    def serve(self, name):
        from gateway_process import LIMITS_LIFTED, GatewayProcess
        self.nodes[name] = GatewayProcess(
            self.data[name], "--no-demo", "--replicate", ",".join(self.cluster.servers),
            "--node-id", name, "--lease-ttl-s", "1.5", *LIMITS_LIFTED)
        return self.nodes[name]

    def start_pair(self):
        """Node a started first (the primary), then b (a follower): {name: stubs}, and
        the cards issued on a."""
        self.serve("a")
        wait_for(lambda: "is the primary" in "".join(self.nodes["a"].output), 30)
        self.serve("b")
        stubs = {name: self.stubs(name) for name in ("a", "b")}
        return stubs, self.cards(stubs["a"][1])

    def start_pair_under_load(self, settle_s):
        """start_pair, then terminals loading node a (MixedLoad on the first 4 cards) for
        settle_s: ({name: stubs}, the cards, the load)."""
        stubs, pans = self.start_pair()
        load = MixedLoad(stubs["a"][0], stubs["a"][2], pans[:4])
        time.sleep(settle_s)
        return stubs, pans, load

    def stubs(self, name):
        from cardgate.gateway.cli.channels import open_channel
        from cardgate.v1 import authorization_pb2_grpc, issuing_pb2_grpc, loyalty_pb2_grpc
        address = self.nodes[name].address
        terminal = open_channel(address, self.certs, "t", own_connection=True)
        return (authorization_pb2_grpc.AuthorizationServiceStub(terminal),
                issuing_pb2_grpc.IssuingServiceStub(
                    open_channel(address, self.certs, "op", own_connection=True)),
                loyalty_pb2_grpc.LoyaltyServiceStub(terminal))

    def cards(self, issuing, count=8):
        from cardgate.v1 import issuing_pb2
        issuing.CreateCardRange(issuing_pb2.CreateCardRangeRequest(
            request_id=rid(), range_id=1, iin_prefix="627700", pan_length=16, currency="EUR",
            name="gift"))
        pans = [make_pan(n) for n in range(1, count + 1)]
        issuing.IssueGiftCards(issuing_pb2.IssueGiftCardsRequest(
            request_id=rid(), range_id=1,
            cards=[issuing_pb2.GiftCardToIssue(pan=p, expiry_yyyymm=209912) for p in pans]))
        return pans

    def stop(self):
        for proc in self.nodes.values():
            if proc.proc.poll() is None:
                proc.stop()

    def check_equal_and_audited(self):
        from cardgate.gateway.store.audit import audit
        for name, path in self.data.items():
            violations, _ = audit(path)
            assert violations == [], (name, violations)
        stores = [Store(path, readonly=True) for path in self.data.values()]
        try:
            assert all(snapshot(s) == snapshot(stores[0]) for s in stores[1:])
        finally:
            for store in stores:
                store.close()


class MixedLoad:
    """Terminal threads, one per card, sending a mixed flow again and again until stopped:
    loads, purchases, pre-authorizations and their completions, refunds of purchases,
    reversals of loads, points earned and redeemed. Every acknowledged request is noted
    (request id -> (method, request, answer)); a refused one is not retried here."""

    def __init__(self, auth, loyalty, pans):
        import threading
        self.auth, self.loyalty = auth, loyalty
        self.acknowledged, self.refused = {}, []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(pan,)) for pan in pans]
        for thread in self.threads:
            thread.start()

    def send(self, method, request):
        import grpc
        try:
            answer = getattr(self.auth if hasattr(self.auth, method) else self.loyalty,
                             method)(request, timeout=5)
        except grpc.RpcError:
            self.refused.append((method, request))
            return None
        self.acknowledged[request.request_id] = (method, request, answer)
        return answer

    def _run(self, pan):
        from cardgate.v1 import loyalty_pb2
        acceptor = common_pb2.Acceptor(merchant_id="m1", outlet_id="o1")
        last_sale = last_load = None
        for step in itertools.count():
            if self.stop.is_set():
                return
            kind = step % 7
            if kind == 0:
                load = authorization_pb2.LoadValueRequest(
                    request_id=rid(), pan=pan, amount=money(5_00), acceptor=acceptor)
                last_load = load.request_id if self.send("LoadValue", load) else last_load
            elif kind == 1:
                sale = authorization_pb2.PurchaseRequest(
                    request_id=rid(), pan=pan, amount=money(1_00), acceptor=acceptor)
                last_sale = sale.request_id if self.send("Purchase", sale) else last_sale
            elif kind == 2:
                hold = authorization_pb2.PreAuthorizeRequest(
                    request_id=rid(), pan=pan, amount=money(2_00), acceptor=acceptor)
                if self.send("PreAuthorize", hold):
                    self.send("CompletePreAuthorization",
                              authorization_pb2.CompletePreAuthorizationRequest(
                                  request_id=rid(), pan=pan, hold_id=hold.request_id,
                                  amount=money(1_50), acceptor=acceptor))
            elif kind == 3 and last_sale:
                self.send("Refund", authorization_pb2.RefundRequest(
                    request_id=rid(), pan=pan, amount=money(10), original_request_id=last_sale,
                    acceptor=acceptor))
            elif kind == 4 and last_load:
                self.send("Reverse", authorization_pb2.ReverseRequest(
                    request_id=rid(), original_request_id=last_load, acceptor=acceptor))
                last_load = None
            elif kind == 5:
                self.send("EarnPoints", loyalty_pb2.EarnPointsRequest(
                    request_id=rid(), pan=pan, points=20, acceptor=acceptor))
            elif kind == 6:
                self.send("RedeemPoints", loyalty_pb2.RedeemPointsRequest(
                    request_id=rid(), pan=pan, points=5, acceptor=acceptor))

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def answered_alike(self, auth, loyalty):
        """Every acknowledged request, sent again to this node, answers as it did."""
        for method, request, answer in self.acknowledged.values():
            assert essence(resend(auth, loyalty, method, request)) == essence(answer), \
                (method, request.request_id)

    def refused_retried_once(self, auth, loyalty):
        """Every refused request, retried twice on this node, answers the same twice."""
        for method, request in self.refused:
            first = resend(auth, loyalty, method, request)
            assert essence(resend(auth, loyalty, method, request)) == essence(first)


def resend(auth, loyalty, method, request):
    return getattr(auth if hasattr(auth, method) else loyalty, method)(request, timeout=10)


def essence(answer):
    a = answer.authorization
    return a.result_code, a.approval_code, a.journal_seq


def first_approval(auth, pan):
    import grpc
    try:
        return auth.LoadValue(authorization_pb2.LoadValueRequest(
            request_id=rid(), pan=pan, amount=money(1)), timeout=5).authorization \
            .result_code == common_pb2.RESULT_CODE_APPROVED
    except grpc.RpcError:
        return False


@pytest.mark.slow
def test_the_primary_killed_under_load_a_follower_serves_with_every_acknowledged_request(
        tmp_path, cluster):
    """The primary is SIGKILLed while terminals load: the follower takes over; every
    request acknowledged before the kill is answered the same on it; the old primary,
    restarted, follows and catches up; both stores are equal and pass the audit."""
    group = Group(tmp_path, cluster)
    try:
        stubs, pans, load = group.start_pair_under_load(2.0)
        auth_b, _, loyalty_b = stubs["b"]
        killed_at = time.monotonic()
        group.nodes["a"].kill()
        load.finish()
        wait_for(lambda: first_approval(auth_b, pans[7]), 30)
        failover_s = time.monotonic() - killed_at
        assert len({m for m, _, _ in load.acknowledged.values()}) == 8, "not a mixed load"
        assert failover_s < 10, failover_s
        load.answered_alike(auth_b, loyalty_b)
        group.serve("a")                                # the old primary comes back: follows
        wait_for(lambda: replication_seq(group.data["a"]) == replication_seq(group.data["b"]), 30)
    finally:
        group.stop()
    group.check_equal_and_audited()
    print(f"failover: {failover_s:.2f} s from the kill to the first approval; "
          f"{len(load.acknowledged)} acknowledged requests all present once")


@pytest.mark.slow
def test_a_primary_frozen_past_its_lease_acknowledges_nothing_the_group_lacks(tmp_path, cluster):
    """The primary is frozen (SIGSTOP) past its lease while terminals load: a follower
    takes over; the frozen one woken (SIGCONT) is fenced by the stream: its batches after
    the takeover are refused, its callers get errors and their retries on the new primary
    answer once. Everything it ever acknowledged is on the new primary, answered alike."""
    import os
    import signal

    group = Group(tmp_path, cluster)
    try:
        stubs, pans, load = group.start_pair_under_load(1.0)
        auth_b, _, loyalty_b = stubs["b"]
        os.kill(group.nodes["a"].proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: first_approval(auth_b, pans[7]), 30)   # b took over
            time.sleep(0.5)
        finally:
            os.kill(group.nodes["a"].proc.pid, signal.SIGCONT)
        time.sleep(3.0)                                  # a wakes, is fenced, steps down
        load.finish()
        assert load.refused, "the woken primary's late requests were not refused"
        load.answered_alike(auth_b, loyalty_b)
        load.refused_retried_once(auth_b, loyalty_b)     # retried on the new primary: once
        wait_for(lambda: replication_seq(group.data["a"]) == replication_seq(group.data["b"]), 30)
    finally:
        group.stop()
    group.check_equal_and_audited()


def stream_leader(cluster, stream="CARDGATE") -> int:
    """The index of the NATS server leading the stream now."""
    import asyncio

    import nats

    async def ask():
        connection = await nats.connect(cluster.servers)
        try:
            return (await connection.jetstream().stream_info(stream)).cluster.leader
        finally:
            await connection.close()
    return int(asyncio.run(ask()).removeprefix("n"))


@pytest.mark.slow
def test_the_streams_leader_killed_under_load_loses_nothing_and_service_goes_on(
        tmp_path, cluster):
    """The NATS server leading the stream is SIGKILLed while terminals send a mixed load
    to the primary: no acknowledged request is lost (each answers alike on both nodes),
    those refused while NATS elected a new leader answer once when retried, approvals go
    on; both stores equal, audits clean."""
    group = Group(tmp_path, cluster)
    try:
        stubs, pans, load = group.start_pair_under_load(1.5)
        cluster.kill(stream_leader(cluster))
        time.sleep(12.0)               # NATS's Raft elects a new leader within about 9 s
        load.finish()
        serving = []
        wait_for(lambda: serving or serving.extend(
            name for name in ("a", "b") if first_approval(stubs[name][0], pans[7])), 60)
        auth, _, loyalty = stubs[serving[0]]
        assert len(load.acknowledged) > 50, len(load.acknowledged)
        load.answered_alike(auth, loyalty)
        load.refused_retried_once(auth, loyalty)
        wait_for(lambda: replication_seq(group.data["a"]) == replication_seq(group.data["b"]), 30)
    finally:
        group.stop()
    group.check_equal_and_audited()
    print(f"{len(load.acknowledged)} acknowledged, {len(load.refused)} refused and retried; "
          f"{serving[0]} served after the stream's leader was killed")


def replication_seq(data_dir):
    store = Store(data_dir, readonly=True)
    try:
        return replication.applied_seq(store)
    finally:
        store.close()


def test_a_backup_says_which_stream_sequence_it_holds(tmp_path, cluster):
    from cardgate.gateway.store.backup import backup
    clock = [NOW_S]
    store, link, writer, ops = node(tmp_path, "a", cluster, clock)
    try:
        ops.create_range(rid(), 1, "627700", 16, "EUR", "gift")
        ops.issue_gift_cards(rid(), 1, [(make_pan(1), 209912)])
        held = replication.applied_seq(store)
    finally:
        writer.stop()
        link.close()
        store.close()
    assert backup(tmp_path / "a", tmp_path / "copy")["replication_seq"] == held == 2


def group_of_two(tmp_path, cluster, clock):
    """Two in-process gateways of one group on the test clock: a the primary, b following."""
    from conftest import LiveGateway
    from cardgate.gateway.security.pki import Pki
    Store(tmp_path / "a", sync=False).close()
    Pki(tmp_path / "a").ensure()               # one PKI for the group, as copies share it
    bootstrap(tmp_path, "a", "b")
    options = dict(clock=lambda: clock[0], replicate=cluster.servers, lease_ttl_s=1.5,
                   writer_idle_tick_s=0.05)
    first = LiveGateway(tmp_path / "a", node_id="a", **options)
    wait_for(lambda: first.gateway.node.role == "primary", 20)
    second = LiveGateway(tmp_path / "b", node_id="b", **options)
    wait_for(lambda: second.gateway.writer.primary_of == "a", 20)
    return first, second


def caught_up(follower, primary):
    return replication.applied_seq(follower.gateway.store) == \
        replication.applied_seq(primary.gateway.store)


def test_pruning_is_logged_so_every_node_forgets_the_same_records(tmp_path, cluster):
    from cardgate.fastcore import records
    from cardgate.gateway.store.audit import audit_store
    from helpers import create_range, issue, load, purchase
    clock = [NOW_S]
    first, second = group_of_two(tmp_path, cluster, clock)
    try:
        create_range(first)
        pan = make_pan(1)
        issue(first, [pan])
        load(first, pan, 50_00)
        sale = rid()
        bought = purchase(first, pan, 10_00, request_id=sale)
        assert bought.result_code == records.Result.APPROVED
        clock[0] += 36 * 86400               # past the requests' window: the next batch prunes
        load(first, pan, 1_00)
        wait_for(lambda: caught_up(second, first), 20)
        for node in (first, second):
            store = node.gateway.store
            with store.env.begin() as txn:
                assert txn.get(uuid.UUID(sale).bytes, db=store.db_requests) is None
                assert txn.stat(store.db_requests)["entries"] == 1     # the last load's
                assert audit_store(store, txn)[0] == []
        assert snapshot(first.gateway.store) == snapshot(second.gateway.store)
        # As documented: a retry so late is a new request, on every node alike.
        again = purchase(first, pan, 10_00, request_id=sale)
        assert again.result_code == records.Result.APPROVED
        assert again.journal_seq > bought.journal_seq
        wait_for(lambda: caught_up(second, first), 20)
        assert snapshot(first.gateway.store) == snapshot(second.gateway.store)
    finally:
        second.close()
        first.close()


def test_a_core_reading_a_clock_of_its_own_is_caught_by_the_follower(tmp_path, cluster, caplog):
    """Planted nondeterminism: the primary's core reads the wall clock instead of the
    batch's. The follower's replay answers otherwise (the card has expired by the wall
    clock, not by the batch's): it stops loudly, without applying that batch."""
    import logging

    import grpc
    from cardgate.fastcore import records
    from cardgate.gateway.store.writer import yyyymm_of
    from helpers import create_range, issue, load, purchase
    clock = [NOW_S]                          # 2026-09; cards valid to 2026-10
    first, second = group_of_two(tmp_path, cluster, clock)
    try:
        create_range(first)
        pan = make_pan(1)
        issue(first, [pan], expiry_yyyymm=202610)
        load(first, pan, 50_00)
        wait_for(lambda: caught_up(second, first), 20)
        agreed = replication.applied_seq(second.gateway.store)
        writer = first.gateway.writer
        real_core = writer._core

        def core_reading_the_wall_clock(txn, packed, now_s, now_yyyymm, entry):
            wall_s = int(time.time())
            return real_core(txn, packed, wall_s, yyyymm_of(wall_s), entry)

        writer._core = core_reading_the_wall_clock
        with caplog.at_level(logging.ERROR, logger="cardgate.node"):
            answer = purchase(first, pan, 10_00)
            assert answer.result_code == records.Result.DECLINED_CARD_EXPIRED
            wait_for(lambda: not second.gateway.node._thread.is_alive(), 20)
        assert "digest mismatch" in caplog.text and "node b stops replicating" in caplog.text
        assert replication.applied_seq(second.gateway.store) == agreed    # not applied
        assert replication.applied_seq(first.gateway.store) == agreed + 1
        with pytest.raises(grpc.RpcError) as refused:
            load(second, pan, 1_00)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "stopped" in refused.value.details()
    finally:
        second.close()
        first.close()


def test_a_node_behind_the_streams_window_stops_saying_why(tmp_path, cluster):
    """A follower whose store ends before the stream's first batch (its backup is older
    than the stream's window) cannot catch up: it stops, saying to start from a newer one."""
    from cardgate.gateway.store import batch_log
    clock = [NOW_S]
    Store(tmp_path / "a", sync=False).close()
    bootstrap(tmp_path, "a", "b")
    window = dict(stream="AGED", subject="aged.batches")
    store = Store(tmp_path / "a", sync=False)
    link = replication.JetStreamLog(cluster.servers, store, **window)
    writer = BatchingWriter(store, clock=lambda: clock[0], log_batch=link.publish).start()
    ops = Operations(store, writer, clock=lambda: clock[0])
    follower = Store(tmp_path / "b", sync=False)
    follower_link = None
    try:
        ops.create_range(rid(), 1, "627700", 16, "EUR", "gift")          # sequence 1
        link._run(link._js.purge_stream("AGED"), 10)        # as its window would drop it
        ops.issue_gift_cards(rid(), 1, [(make_pan(1), 209912)])         # sequence 2
        follower_link = replication.JetStreamLog(cluster.servers, follower, **window)
        with pytest.raises(batch_log.LogError, match="start this node from a newer backup"):
            follower_link.follow(until_seq=2)
        assert replication.applied_seq(follower) == 0
    finally:
        if follower_link is not None:
            follower_link.close()
        follower.close()
        writer.stop()
        link.close()
        store.close()


def test_a_client_listing_the_groups_nodes_reaches_whichever_is_primary(tmp_path, cluster):
    """One channel to 'a,b': a write sent to the follower is answered UNAVAILABLE and sent
    again to the next node; after a takeover the same channel reaches the new primary."""
    from cardgate.fastcore import records
    from cardgate.gateway.cli.channels import open_channel
    from cardgate.v1 import authorization_pb2_grpc
    from helpers import create_range, issue
    clock = [NOW_S]
    first, second = group_of_two(tmp_path, cluster, clock)
    try:
        create_range(first)
        pan = make_pan(1)
        issue(first, [pan])
        channel = open_channel(f"{second.gateway.address},{first.gateway.address}",
                               first.certs, "terminal-1")
        auth = authorization_pb2_grpc.AuthorizationServiceStub(channel)

        def load(request_id):
            return auth.LoadValue(authorization_pb2.LoadValueRequest(
                request_id=request_id, pan=pan, amount=money(1_00)), timeout=10).authorization

        answers = [load(rid()) for _ in range(6)]              # b refuses, a answers
        assert all(a.result_code == records.Result.APPROVED for a in answers)
        first.gateway.node._stopping.set()                     # a stops renewing: b takes over
        wait_for(lambda: second.gateway.node.role == "primary", 20)
        again = load(rid())
        assert again.result_code == records.Result.APPROVED
        assert second.gateway.store.read_card(
            second.gateway.store.pan_key.card_key(pan))[1].balance_minor == 7_00
        channel.close()
    finally:
        second.close()
        first.close()


def test_a_list_of_gateways_becomes_one_channel_or_a_clear_error():
    from cardgate.gateway.cli.channels import group_target
    assert group_target("gw:50051") == ("gw:50051", [])
    target, options = group_target("localhost:7001, 127.0.0.1:7002")
    assert target == "ipv4:127.0.0.1:7001,127.0.0.1:7002"      # localhost's v4 address once
    assert ("grpc.ssl_target_name_override", "localhost") in options
    for bad, message in (("127.0.0.1:7001,127.0.0.1", "is not host:port"),
                         ("127.0.0.1:7001,[::1]:7002", "must all be IPv4 or all IPv6")):
        with pytest.raises(ValueError, match=message):
            group_target(bad)
