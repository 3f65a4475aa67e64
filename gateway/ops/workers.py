"""`cardgate serve --workers N`: N gateway processes on one port and one store.

The supervisor (the process the operator started) prepares the data directory once
(PKI, keys, store format, the demo), holds the port, then starts N worker processes.
Each is a whole gateway (`cardgate serve` with a hidden --worker-index): its own gRPC
server bound with SO_REUSEPORT, so the kernel spreads connections over the workers, and
its own group-commit writer. They share the LMDB environment: its write lock serializes
their commits, and a request id is looked up inside the writer's transaction, so a retry
reaching another worker finds the first answer (see README, "Several workers").

A worker that dies is started again; SIGTERM or SIGINT stops every worker gracefully.
Each worker serves its own /metrics (the port given, then the next ones).
"""
import ctypes
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

from cardgate.gateway.netaddr import host_of

log = logging.getLogger("cardgate.workers")

READY_TIMEOUT_S = 60.0
RESTARTS_MAX = 5                 # in RESTART_WINDOW_S, before the supervisor gives up
RESTART_WINDOW_S = 60.0
STOP_TIMEOUT_S = 45.0
PR_SET_PDEATHSIG = 1


class WorkersFailed(OSError):
    pass


def split_listen(listen: str) -> tuple:
    host = host_of(listen)
    return host, int(listen.rsplit(":", 1)[1])


def join_listen(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hold_port(listen: str) -> tuple:
    """Bind the listen address for the workers: refused when anything else holds the port
    (a bind without SO_REUSEPORT first; SO_REUSEADDR, as gRPC sets, lets connections of a
    gateway just stopped linger), then held with SO_REUSEPORT until they listen (port 0
    becomes a free port here, the same for every worker). Returns (socket, port)."""
    host, port = split_listen(listen)
    family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise WorkersFailed(f"cannot listen on {listen}: is another gateway using that port? "
                                f"({exc.strerror})") from None
        port = probe.getsockname()[1]
    held = socket.socket(family, kind, proto)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    held.bind(address[:1] + (port,) + address[2:])
    return held, port


def metrics_listen_of(metrics_listen: str, index: int):
    """Where worker `index` (0 for a lone gateway) serves /metrics: None for 'off', port 0
    (any) for port 0, else the given port + index."""
    if metrics_listen == "off":
        return None
    host, port = split_listen(metrics_listen)
    return join_listen(host, port + index if port else 0)


def die_with_parent():
    """In a worker: SIGTERM when the supervisor goes, however it goes."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:          # it went before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def tell_ready(fd: int, index: int, metrics_address):
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps({"index": index, "pid": os.getpid(), "metrics": metrics_address}) + "\n")


class Worker:
    def __init__(self, index: int, argv: list):
        self.index = index
        self.argv = argv
        self.proc = None
        self.metrics = None

    def start(self):
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                self.argv + ["--worker-index", str(self.index), "--ready-fd", str(write_fd)],
                pass_fds=(write_fd,), stdin=subprocess.DEVNULL)
        finally:
            os.close(write_fd)
        self._ready = os.fdopen(read_fd)
        return self

    def wait_ready(self, deadline: float):
        """The worker's ready line, or WorkersFailed when it ended or took too long."""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkersFailed(f"worker {self.index} did not start in {READY_TIMEOUT_S:.0f} s")
                if select.select([self._ready], [], [], min(left, 0.5))[0]:
                    line = self._ready.readline()
                    if not line:
                        raise WorkersFailed(f"worker {self.index} ended while starting "
                                            f"(exit code {self.proc.wait()}; see its log above)")
                    self.metrics = json.loads(line)["metrics"]
                    return self
        finally:
            self._ready.close()


class Supervisor:
    def __init__(self, count: int, worker_argv: list, listen: str, stop_requested: threading.Event):
        self.count = count
        self.worker_argv = worker_argv
        self.listen = listen
        self.workers = []
        self.stop_requested = stop_requested        # set by the signal handlers
        self.restarts = []
        self._held = self.address = None

    def hold(self):
        """Take the port before anything else is done (WorkersFailed if it is not free)."""
        self._held, port = hold_port(self.listen)
        self.address = join_listen(split_listen(self.listen)[0], port)

    def start(self):
        """Start the workers on the held port, wait until each serves, let the port go."""
        argv = self.worker_argv + ["--listen", self.address]
        try:
            self.workers = [Worker(i, argv).start() for i in range(self.count)]
            deadline = time.monotonic() + READY_TIMEOUT_S
            for worker in self.workers:
                worker.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        finally:
            self._held.close()

    def run(self) -> int:
        """Until SIGTERM/SIGINT: start again any worker that ends. The exit code."""
        while not self.stop_requested.wait(0.2):
            for worker in self.workers:
                code = worker.proc.poll()
                if code is None:
                    continue
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S] + [now]
                if len(self.restarts) > RESTARTS_MAX:
                    log.error("workers ended %d times in %.0f s; stopping them all",
                              len(self.restarts), RESTART_WINDOW_S)
                    self.stop()
                    return 1
                log.error("worker %d (pid %d) ended with exit code %d; starting it again",
                          worker.index, worker.proc.pid, code)
                try:
                    worker.start().wait_ready(time.monotonic() + READY_TIMEOUT_S)
                except WorkersFailed as exc:
                    log.error("%s", exc)
                    continue
                log.info("worker %d serves again (pid %d, metrics %s)", worker.index,
                         worker.proc.pid, worker.metrics or "off")
        return 0 if self.stop() else 1

    def stop(self) -> bool:
        """SIGTERM to every worker, then wait (SIGKILL after STOP_TIMEOUT_S). True if
        every worker ended by itself with exit code 0."""
        running = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        clean = True
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in running:
            try:
                clean &= proc.wait(max(0.1, deadline - time.monotonic())) == 0
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                clean = False
        return clean


def worker_argv(args) -> list:
    """The `cardgate serve` command line of a worker, from the supervisor's arguments
    (the listen address, index and ready pipe are added per worker)."""
    argv = [sys.executable, "-m", "cardgate.gateway.cli.main", "--log-level", args.log_level,
            "--log-format", args.log_format]
    if args.log_file:
        argv += ["--log-file", args.log_file]
    argv += ["serve", "--data-dir", str(args.data_dir), "--no-demo",
             "--map-size-mib", str(args.map_size_mib),
             "--terminal-rate-per-s", str(args.terminal_rate_per_s),
             "--calls-per-certificate", str(args.calls_per_certificate),
             "--card-per-minute", str(args.card_per_minute),
             "--hold-timeout-s", str(args.hold_timeout_s),
             "--metrics-listen", args.metrics_listen]
    if args.retention:
        argv += ["--retention", args.retention]
    return argv + (["--insecure"] if args.insecure else [])
