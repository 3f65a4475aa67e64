"""Hand results from worker threads (the writer) to an asyncio event loop: calls queued
from any thread run on the loop, with one wake-up of the loop per burst of calls
instead of one per call (each wake-up is a write to the loop's self-pipe)."""
import collections
import logging
import threading

log = logging.getLogger("cardgate.loop")


class LoopHandoff:
    def __init__(self, loop):
        self.loop = loop
        self._calls = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def call(self, fn, *args):
        """Run fn(*args) on the loop soon; safe from any thread."""
        self._calls.append((fn, args))
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:        # the loop is closed: the gateway stopped, nobody waits
            pass

    def _drain(self):
        with self._lock:
            self._scheduled = False         # before draining: later calls wake again
        calls = self._calls
        while calls:
            fn, args = calls.popleft()
            try:
                fn(*args)
            except Exception:               # one bad call must not strand the others
                log.exception("hand-off to the event loop failed")
