"""The committed-batch log on NATS JetStream: the primary publishes each batch before it
commits, fenced by the stream itself; followers replay the stream in order.

* Publishing (JetStreamLog.publish, the writer's log_batch): the batch's entry
  (batch_log.py) goes to the stream's subject with Nats-Expected-Last-Sequence set to the
  last sequence this node applied. The stream stores it on a quorum of its replicas and
  acknowledges with its sequence; only then does the writer commit (the sequence is
  written in the same transaction) and answer. A refusal of the expected sequence means
  another node wrote to the stream since: this one is deposed, its batch is aborted and
  its callers get UNAVAILABLE ("retry with the same request_id") - it never acknowledges
  anything the stream does not hold.
* Following (JetStreamLog.follow): entries are read in stream order from the one after
  the last this store applied, and replayed (batch_log.apply_entry), the sequence
  written with each; a replay whose replies differ from the primary's stops the follower.

nats-py is asyncio: the client runs on a loop of its own, in a thread, and the writer's
thread waits on it (one round trip per batch, amortized by group commit).
"""
import asyncio
import hashlib
import logging
import threading

from cardgate.gateway.store import batch_log
from cardgate.gateway.store.writer import LogRefused

log = logging.getLogger("cardgate.replication")

APPLIED_KEY = b"last_seq"                    # (store.db_replication) the last sequence applied
WRONG_LAST_SEQUENCE = 10071                  # JetStream's error code for a failed expectation
PUBLISH_TIMEOUT_S = 8.0          # a publish is sent again until answered, this long at most
                                # (below the writer's REPLY_WAIT_S_MAX: a NATS node lost
                                # under load may take seconds to get its stream a new leader)
STREAM_READY_S_MAX = 30.0
# The stream's window: batches older or beyond these are dropped by the stream. A node
# whose store is behind the window (a backup older than it) cannot catch up from it.
STREAM_MAX_AGE_S = 7 * 86400
STREAM_MAX_BYTES = 8 << 30
LEASE_TTL_S = 3.0          # the primary's lease lapses this long after its last renewal
PRIMARY_KEY = "primary"


def applied_seq(store, txn=None) -> int:
    """The last stream sequence this store applied (0: none)."""
    if txn is None:
        with store.env.begin() as txn:
            return applied_seq(store, txn)
    found = txn.get(APPLIED_KEY, db=store.db_replication)
    return int.from_bytes(found, "big") if found else 0


class JetStreamLog:
    """One node's link to the stream: publish as primary, or follow."""

    def __init__(self, servers: list, store, *, stream="CARDGATE", subject="cardgate.batches",
                 replicas=3, max_age_s=STREAM_MAX_AGE_S, max_bytes=STREAM_MAX_BYTES):
        import nats                              # nats-py: only where replication is on
        self._nats = nats
        self.store, self.stream, self.subject = store, stream, subject
        self.deposed = False                 # another node wrote to the stream
        self.uncertain = False               # a publish whose outcome is not known
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cardgate-nats",
                                        daemon=True)
        self._thread.start()
        self._nc = self._run(nats.connect(servers, max_reconnect_attempts=-1,
                                          reconnect_time_wait=0.2), 30)
        self._js = self._nc.jetstream()
        self._run(self._ensure_stream(replicas, max_age_s, max_bytes), STREAM_READY_S_MAX + 5)

    def _run(self, coroutine, timeout_s):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    async def _ensure_stream(self, replicas, max_age_s, max_bytes):
        """The stream, made if it does not exist, its window set as asked; a cluster just
        started elects its JetStream leaders first (a few seconds): asked again until it
        answers."""
        from nats.js.api import StreamConfig
        config = StreamConfig(name=self.stream, subjects=[self.subject], num_replicas=replicas,
                              max_age=max_age_s, max_bytes=max_bytes)
        errors = self._nats.js.errors
        deadline = self._loop.time() + STREAM_READY_S_MAX
        while True:
            try:
                try:
                    found = (await self._js.stream_info(self.stream)).config
                except self._nats.js.errors.NotFoundError:
                    await self._js.add_stream(config)
                    return
                if (found.max_age, found.max_bytes) != (max_age_s, max_bytes):
                    found.max_age, found.max_bytes = max_age_s, max_bytes
                    await self._js.update_stream(found)
                return
            except (self._nats.errors.TimeoutError, errors.ServiceUnavailableError,
                    errors.ServerError, errors.NoStreamResponseError) as exc:
                if self._loop.time() > deadline:
                    raise RuntimeError(f"JetStream did not answer within {STREAM_READY_S_MAX} s "
                                       f"({type(exc).__name__}: {exc})") from None
                await asyncio.sleep(0.25)

    # ---- primary ---------------------------------------------------------------------

    def publish(self, entry: batch_log.Entry, txn):
        """The writer's log_batch: publish, fenced; on success the sequence is written in
        txn (the batch's own transaction). Raises LogRefused (the batch aborts).

        A publish whose answer is lost (a NATS node going away mid-way) is sent again,
        within PUBLISH_TIMEOUT_S, under the same Nats-Msg-Id: the stream answers a copy it
        already stored with that message's sequence instead of storing it twice. Should the
        outcome stay unknown, `uncertain` is set: the node then follows the stream (which
        replays the batch if it was stored after all) before it writes again."""
        expected = applied_seq(self.store, txn)
        data = entry.encode()
        headers = {"Nats-Expected-Last-Sequence": str(expected),
                   "Nats-Msg-Id": f"{expected}-{hashlib.sha256(data).hexdigest()[:32]}"}
        try:
            ack = self._run(self._publish_until_answered(data, headers), PUBLISH_TIMEOUT_S + 2)
        except self._nats.js.errors.APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                self.deposed = True
                raise LogRefused("this node is no longer the primary: the stream holds batches "
                                 f"after sequence {expected} that it did not write") from None
            raise LogRefused(f"the stream refused the batch ({exc})") from None
        except Exception as exc:                   # timeouts, no quorum, connection lost
            self.uncertain = True
            raise LogRefused(f"the stream did not acknowledge the batch ({type(exc).__name__}: "
                             f"{exc})") from None
        txn.put(APPLIED_KEY, ack.seq.to_bytes(8, "big"), db=self.store.db_replication)
        return ack.seq

    def last_seq(self) -> int:
        """The stream's last sequence, as its leader knows it now."""
        return self._run(self._js.stream_info(self.stream), 10).state.last_seq

    async def _publish_until_answered(self, data, headers):
        deadline = self._loop.time() + PUBLISH_TIMEOUT_S
        while True:
            try:
                return await self._js.publish(self.subject, data, headers=headers,
                                              timeout=max(0.2, deadline - self._loop.time()))
            except (TimeoutError, self._nats.js.errors.NoStreamResponseError,
                    self._nats.errors.ConnectionClosedError):
                if self._loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.1)

    # ---- follower --------------------------------------------------------------------

    def follow(self, until_seq=None, idle_s=1.0) -> int:
        """Replay the stream's entries after the last this store applied, in order, up to
        until_seq (or until none comes for idle_s); returns the last sequence applied.
        Raises batch_log.LogError on a divergent replay (the follower must stop)."""
        return self._run(self._follow(until_seq, idle_s), None)

    async def _follow(self, until_seq, idle_s):
        from nats.js.api import ConsumerConfig, DeliverPolicy
        start = applied_seq(self.store) + 1
        subscription = await self._js.pull_subscribe(
            self.subject, durable=None, stream=self.stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                  opt_start_seq=start))
        last = start - 1
        try:
            while until_seq is None or last < until_seq:
                try:
                    messages = await subscription.fetch(256, timeout=idle_s)
                except TimeoutError:            # nats' and asyncio's (one class since 3.11)
                    if until_seq is None:
                        break
                    continue
                for message in messages:
                    seq = message.metadata.sequence.stream
                    if seq != last + 1:
                        raise batch_log.LogError(
                            f"this store holds the stream up to sequence {last}, and the stream "
                            f"now starts at {seq} (older batches are past its window): start "
                            "this node from a newer backup of another node")
                    entry = batch_log.decode(message.data)
                    self._apply(entry, seq)
                    last = seq
                    await message.ack()
        finally:
            await subscription.unsubscribe()
        return last

    def _apply(self, entry, seq):
        with self.store.env.begin(write=True) as txn:
            digest = batch_log.replay(txn, self.store, entry)
            if digest != entry.digest:
                raise batch_log.LogError(f"batch {entry.batch_no} (sequence {seq}): the replay's "
                                         "replies differ from the primary's (digest mismatch); "
                                         "this node stops here")
            txn.put(APPLIED_KEY, seq.to_bytes(8, "big"), db=self.store.db_replication)

    def close(self):
        try:
            self._run(self._nc.close(), 10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


class Lease:
    """Who is the primary: a key of a JetStream key-value bucket (replicated like the
    stream) whose entries live LEASE_TTL_S. The holder renews it well within that; when it
    stops (dead, frozen, cut off) the entry lapses and a caught-up follower may take it.
    Safety does not rest on the lease (a holder frozen past it is fenced by the stream's
    expected sequence); liveness does."""

    def __init__(self, log: JetStreamLog, node_id: str, *, bucket="cardgate_lease",
                 ttl_s=LEASE_TTL_S):
        self.log, self.node_id, self.ttl_s = log, node_id, ttl_s
        self.revision = None
        self._kv = log._run(self._bucket(bucket, ttl_s), STREAM_READY_S_MAX + 5)

    async def _bucket(self, bucket, ttl_s):
        from nats.js.api import KeyValueConfig
        js = self.log._js
        try:
            return await js.key_value(bucket)
        except self.log._nats.js.errors.BucketNotFoundError:
            return await js.create_key_value(KeyValueConfig(bucket=bucket, ttl=ttl_s, history=1,
                                                            replicas=3))

    def holder(self):
        """The node id holding the lease, or None when it is free (lapsed or never taken)."""
        try:
            entry = self.log._run(self._kv.get(PRIMARY_KEY), 5)
        except self.log._nats.js.errors.KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    def acquire(self) -> bool:
        """Take the lease if it is free; True when this node now holds it."""
        try:
            self.revision = self.log._run(self._kv.create(PRIMARY_KEY, self.node_id.encode()), 5)
            return True
        except (self.log._nats.js.errors.KeyWrongLastSequenceError,
                self.log._nats.js.errors.APIError):
            return False

    def renew(self) -> bool:
        """Renew a lease held; False when it was lost (lapsed and taken, or deleted)."""
        if self.revision is None:
            return False
        try:
            self.revision = self.log._run(self._kv.update(PRIMARY_KEY, self.node_id.encode(),
                                                          last=self.revision), 5)
            return True
        except (self.log._nats.js.errors.KeyWrongLastSequenceError,
                self.log._nats.js.errors.APIError):
            self.revision = None
            return False
