"""One node of a replicated group (replication.py): it follows the stream while another
node holds the primary's lease, and takes over when the lease lapses.

* Follower: replays every new entry of the stream (its store stays the primary's), keeps
  the writer refusing writes with the primary's name (UNAVAILABLE: clients list several
  gateways and go on to the next), serves reads from its store, and watches the lease.
* Taking over: the lease is free (its holder stopped renewing: dead, frozen, cut off):
  take it, replay the stream to its last sequence, then let the writer write, each batch
  published before its commit and fenced by the stream's expected sequence.
* Primary: renews the lease every third of its TTL; when a renewal fails or a publish is
  refused (another node wrote to the stream), it steps down and follows again. A primary
  frozen past its lease cannot acknowledge anything after waking: its next publish is
  refused by the stream, so the batch aborts and its callers get UNAVAILABLE.
"""
import logging
import threading
import time

from cardgate.gateway.store import batch_log, replication

log = logging.getLogger("cardgate.node")

FOLLOW_IDLE_S = 0.2


class ReplicatedNode:
    def __init__(self, store, writer, servers, node_id, *, lease_ttl_s=replication.LEASE_TTL_S,
                 group="CARDGATE", replicas=3, stream_max_age_s=replication.STREAM_MAX_AGE_S,
                 stream_max_bytes=replication.STREAM_MAX_BYTES):
        """group: the replicated group's name: its stream, subject and lease bucket."""
        self.store, self.writer, self.node_id = store, writer, node_id
        self.link = replication.JetStreamLog(servers, store, stream=group,
                                             subject=f"{group.lower()}.batches",
                                             replicas=replicas, max_age_s=stream_max_age_s,
                                             max_bytes=stream_max_bytes)
        self.lease = replication.Lease(self.link, node_id, bucket=f"{group}_lease",
                                       ttl_s=lease_ttl_s)
        self.lease_ttl_s = lease_ttl_s
        self.role = "follower"
        self.became_primary_at = None
        writer.primary_of = ""                 # a follower until it holds the lease
        writer.log_batch = self.link.publish
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cardgate-node", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        self._thread.join(timeout=30)
        self.link.close()

    def _run(self):
        while not self._stopping.is_set():
            try:
                if self.role == "follower":
                    self._follow_once()
                else:
                    self._hold_once()
            except batch_log.LogError:          # a divergent replay stops the node loudly
                log.exception("node %s stops replicating", self.node_id)
                self.writer.primary_of = "(this node stopped: see its log)"
                return
            except Exception as exc:            # NATS unreachable for a while: try again
                log.warning("node %s: %s: %s; trying again", self.node_id,
                            type(exc).__name__, exc)
                self._stopping.wait(FOLLOW_IDLE_S)

    def _follow_once(self):
        self.link.follow(idle_s=FOLLOW_IDLE_S)
        holder = self.lease.holder()
        self.writer.primary_of = holder or ""
        if holder == self.node_id and self.lease.revision is not None:
            self._take_over()               # still its lease: caught up, it writes again
        elif holder is None and self.lease.acquire():
            self._take_over()

    def _take_over(self):
        """Holding the lease: replay the stream to its last sequence, then write."""
        last = self.link.last_seq()
        if replication.applied_seq(self.store) < last:
            self.link.follow(until_seq=last)
        self.link.deposed = False
        self.role = "primary"
        self.became_primary_at = time.monotonic()
        self.writer.primary_of = None
        log.warning("node %s is the primary (stream sequence %d)", self.node_id, last)

    def _hold_once(self):
        self._stopping.wait(self.lease_ttl_s / 3)
        if self._stopping.is_set():
            return
        if self.link.uncertain:             # follow first: the batch may be in the stream
            self.writer.primary_of = ""
            self.role = "follower"
            self.link.uncertain = False
            log.warning("node %s follows the stream before writing again", self.node_id)
            return
        if self.link.deposed or not self.lease.renew():
            self.writer.primary_of = ""
            self.role = "follower"
            log.warning("node %s steps down: %s", self.node_id,
                        "another node wrote to the stream" if self.link.deposed
                        else "its lease was lost")
