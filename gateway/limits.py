"""Every limit of the gateway, in one place, with its unit in its name."""
from cardgate.fastcore import records

# Group commit.
BATCH_SIZE_MAX = 1000            # core requests applied in one LMDB write transaction
QUEUE_LENGTH_MAX = 10_000        # submissions waiting for the writer; beyond: RESOURCE_EXHAUSTED
BATCH_LINGER_S = 0.0             # extra wait for more requests before a commit (0: none;
                                 # concurrent requests gather while the previous commit syncs)
REPLY_WAIT_S_MAX = 10.0          # a caller waits this long for its commit, then UNAVAILABLE

# Holds.
HOLD_TIMEOUT_S_DEFAULT = records.HOLD_TIMEOUT_S_DEFAULT  # the core's default, seconds
WRITER_IDLE_TICK_S = 1.0         # an idle writer looks for expired holds this often

# gRPC.
MESSAGE_BYTES_MAX = 64 * 1024    # largest request or response message accepted
SERVER_THREADS = 32              # sync gRPC server worker threads
GRACE_S_ON_STOP = 5.0            # in-flight calls get this long to finish on shutdown

# Access.
TERMINAL_REQUESTS_PER_S_MAX = 500.0  # sustained requests a second from one terminal certificate
TERMINAL_REQUESTS_BURST_MAX = 1000   # requests a terminal may send at once after a quiet spell
# Operations (a forecourt batch's or stream's each, a unary request's one) a second from
# one terminal certificate, beside its requests: a batch is one request of many operations.
TERMINAL_OPERATIONS_PER_S_MAX = 5000.0
TERMINAL_OPERATIONS_BURST_MAX = 10_000
TERMINALS_TRACKED_MAX = 100_000      # rate-limit buckets kept in memory
CALLS_PER_CERTIFICATE_MAX = 64       # calls (streams included) one client certificate has
                                     # open at once; more: RESOURCE_EXHAUSTED, before any work
STREAMS_PER_CERTIFICATE_MAX = 8      # of those, streams (a forecourt controller needs one)
STREAMS_PER_CONNECTION_MAX = 128     # HTTP/2 streams (calls) open at once on one connection
IDENTITY_CACHE_ENTRIES_MAX = 4096    # parsed client certificates kept
OUTLET_CODES_CACHED_MAX = 4096       # outlet and region names hashed to the core's codes
CARD_AUTHORIZATIONS_PER_MINUTE_MAX = 60  # money requests on one card a minute (velocity)
CARDS_TRACKED_MAX = 1_000_000        # velocity windows kept in memory

# Requests.
FORECOURT_BATCH_OPERATIONS_MAX = 500  # operations in one AuthorizeBatch call
STREAM_IN_FLIGHT_MAX = 1000           # operations of one stream awaiting their answers
ISSUE_CARDS_PER_REQUEST_MAX = 500
ISSUE_CARDS_PER_BATCH_MAX = 100_000   # cards one IssueCards request may number
RANGE_NAME_BYTES_MAX = 32

# Store.
MAP_SIZE_BYTES_DEFAULT = 1 << 30  # 1 GiB of address space; LMDB files grow as written
MAX_READERS = 510                 # concurrent read transactions of every process (workers + tools)
