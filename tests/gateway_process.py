"""Run `cardgate serve` as a real subprocess, for tests that kill and restart it."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

_LISTENING = re.compile(r"cardgate listening on (\S+),")
# Load from a few client threads on one terminal certificate and a few cards: the per-card
# and per-terminal rate limits lifted, which would refuse part of it.
LIMITS_LIFTED = ("--card-per-minute", "1000000", "--terminal-rate-per-s", "1000000")


def children_of(pid: int) -> list:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:               # its parent
                found.append(int(entry))
    return found


class GatewayProcess:
    def __init__(self, data_dir, *extra_args, start_timeout_s=30.0, global_args=()):
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cardgate.gateway.cli.main", "--log-level", "DEBUG", *global_args, "serve",
             "--data-dir", str(data_dir),
             "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.output = []
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            match = _LISTENING.search(line)
            if match:
                self.address = match.group(1)
                self._reader = threading.Thread(target=self._read_rest, daemon=True)
                self._reader.start()
                return
        self.proc.kill()
        raise RuntimeError("gateway did not start:\n" + "".join(self.output) + self.proc.stdout.read())

    def _read_rest(self):
        for line in self.proc.stdout:
            self.output.append(line)

    def channel(self, name="demo-terminal", own_connection=False):
        """A client channel with one of the demo's certificates."""
        from cardgate.gateway.cli.channels import open_channel
        from cardgate.gateway.cli.demo import clients_dir
        return open_channel(self.address, clients_dir(self.data_dir), name, own_connection=own_connection)

    def kill(self):
        """SIGKILL to the gateway and, with --workers, to every worker with it."""
        for pid in children_of(self.proc.pid) + [self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)

    def stop(self):
        """SIGTERM, as an operator's service manager would; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        return self.proc.returncode
