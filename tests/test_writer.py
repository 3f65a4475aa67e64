"""The group-commit writer: one transaction for everything waiting, answers only after
the commit, reads never wait for it, and a full store refuses without losing anything."""
import concurrent.futures
import threading

import pytest

from cardgate.fastcore import records
from cardgate.fastcore.records import Op, Result
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import BatchingWriter, QueueFull, StoreFull

from helpers import CoreThatFailsOn, make_pan


def _id(n):
    return n.to_bytes(16, "big")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path, map_size_bytes=64 << 20)
    yield s
    s.close()


def setup_card(writer, store):
    key = store.pan_key.card_key(make_pan(1))
    replies = writer.submit([
        records.pack_request(Op.CREATE_RANGE, _id(10**9), range_id=1, currency="EUR",
                             iin_prefix=627700, iin_digits=6, pan_length=16),
        records.pack_request(Op.ISSUE_CARD, _id(10**9 + 1), card_key=key, range_id=1,
                             expiry_yyyymm=209912, pan_first6=627700, pan_last4=1, pan_length=16),
        records.pack_request(Op.LOAD, _id(10**9 + 2), card_key=key, currency="EUR",
                             amount_minor=1_000_00)])
    assert all(r.result == Result.APPROVED for r in replies)
    return key


def test_waiting_requests_share_one_commit_and_are_answered_only_after_it(store):
    writer = BatchingWriter(store).start()
    try:
        key = setup_card(writer, store)
        committed = writer.batches_committed
        blocker = store.env.begin(write=True)      # holds LMDB's writer lock
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            futures = [pool.submit(writer.submit, [records.pack_request(
                Op.PURCHASE, _id(i), card_key=key, currency="EUR", amount_minor=1)])
                for i in range(1, 51)]
            done, _ = concurrent.futures.wait(futures, timeout=0.5)
            assert not done, "a reply came back before its commit"
            # A read does not wait behind the blocked writer.
            card, account = store.read_card(key)
            assert account.balance_minor == 1_000_00
            blocker.abort()
            replies = [f.result(timeout=10)[0] for f in futures]
        assert all(r.result == Result.APPROVED for r in replies)
        # The first purchase went alone (the writer took it, then waited on the lock);
        # the 49 that queued meanwhile were applied and synced in one transaction.
        assert writer.batches_committed - committed == 2
        assert store.read_card(key)[1].balance_minor == 1_000_00 - 50
    finally:
        writer.stop()


def test_a_full_queue_is_refused_at_once(store):
    writer = BatchingWriter(store, queue_length_max=2).start()
    try:
        key = setup_card(writer, store)
        blocker = store.env.begin(write=True)
        results = []

        def submit(i):
            try:
                results.append(writer.submit([records.pack_request(
                    Op.PURCHASE, _id(i), card_key=key, currency="EUR", amount_minor=1)]))
            except QueueFull as exc:
                results.append(exc)

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(1, 8)]
        for t in threads:
            t.start()
        for t in threads[:]:
            t.join(timeout=0.3)
        refused = [r for r in results if isinstance(r, QueueFull)]
        assert refused and "retry" in str(refused[0])
        blocker.abort()
        for t in threads:
            t.join(timeout=10)
        applied = [r for r in results if not isinstance(r, QueueFull)]
        assert len(applied) + len(refused) == 7
        assert store.read_card(key)[1].balance_minor == 1_000_00 - len(applied)
    finally:
        writer.stop()


def test_a_full_store_refuses_the_batch_and_loses_nothing_acknowledged(tmp_path):
    store = Store(tmp_path, map_size_bytes=256 << 10)
    writer = BatchingWriter(store).start()
    try:
        key = setup_card(writer, store)
        acknowledged = 0
        with pytest.raises(StoreFull, match="full"):
            for i in range(1, 100_000):
                writer.submit([records.pack_request(Op.PURCHASE, _id(i), card_key=key,
                                                    currency="EUR", amount_minor=1)])
                acknowledged += 1
        assert not writer.commit_ok
        assert store.read_card(key)[1].balance_minor == 1_000_00 - acknowledged
        store.set_map_size(4 << 20)                 # the operator grows the map
        reply = writer.submit([records.pack_request(Op.PURCHASE, _id(10**6), card_key=key,
                                                    currency="EUR", amount_minor=1)])[0]
        assert reply.result == Result.APPROVED and writer.commit_ok
        assert reply.balance_minor == 1_000_00 - acknowledged - 1
    finally:
        writer.stop()
        store.close()


def test_a_request_that_makes_the_core_raise_fails_alone(store, monkeypatch):
    """999 purchases and one request the core raises on, in one batch of 1,000: the 999
    are answered and committed, the one gets an error naming its request id, and the next
    batch is clean."""
    from cardgate.gateway.store import writer as writer_mod

    poison = _id(777)
    core = CoreThatFailsOn(writer_mod.ledger, poison)
    monkeypatch.setattr(writer_mod, "ledger", core)
    writer = BatchingWriter(store).start()
    try:
        key = setup_card(writer, store)
        committed = writer.batches_committed
        answers, all_answered = {}, threading.Event()

        def answered(i):
            def callback(replies, error):
                answers[i] = error if error is not None else replies[0]
                if len(answers) == 1_001:
                    all_answered.set()
            return callback

        blocker = store.env.begin(write=True)       # everything queues behind it
        writer.submit_async([records.pack_request(Op.PURCHASE, _id(5_000), card_key=key,
                                                  currency="EUR", amount_minor=1)], answered(0))
        for i in range(1, 1_001):                   # one batch of 1,000 (the first goes alone)
            writer.submit_async([records.pack_request(Op.PURCHASE, _id(i), card_key=key,
                                                      currency="EUR", amount_minor=1)], answered(i))
        blocker.abort()
        assert all_answered.wait(30)
        failed = {i: a for i, a in answers.items() if isinstance(a, Exception)}
        assert list(failed) == [777]
        assert isinstance(failed[777], writer_mod.CoreFault)
        assert "00000000-0000-0000-0000-000000000309" in str(failed[777])   # 777, as a UUID
        assert all(a.result == Result.APPROVED for i, a in answers.items() if i != 777)
        assert store.read_card(key)[1].balance_minor == 1_000_00 - 1_000
        assert core.raised > 1 and writer.batches_committed - committed > 2

        # The next batch is clean, and the failed request left nothing: sent again (the
        # core now mended), it is applied for the first time.
        monkeypatch.setattr(writer_mod, "ledger", core.real)
        again = writer.submit([records.pack_request(Op.PURCHASE, poison, card_key=key,
                                                    currency="EUR", amount_minor=1)])[0]
        assert again.result == Result.APPROVED
        assert again.balance_minor == 1_000_00 - 1_001
    finally:
        writer.stop()
