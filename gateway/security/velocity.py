"""Per-card velocity: how many money requests one card may make in a minute.

Counted in memory per gateway process, in fixed one-minute windows, for at most
CARDS_TRACKED_MAX cards; a refused request changes nothing.
"""
import threading

from cardgate.gateway import limits


class CardVelocity:
    def __init__(self, per_minute_max: int, cards_tracked_max: int = limits.CARDS_TRACKED_MAX):
        assert per_minute_max >= 1
        self.per_minute_max = per_minute_max
        self.cards_tracked_max = cards_tracked_max
        self._windows = {}          # card key -> [minute, count]
        self._lock = threading.Lock()

    def admit(self, card_key: bytes, now_s: int) -> bool:
        minute = now_s // 60
        with self._lock:
            window = self._windows.get(card_key)
            if window is None or window[0] != minute:
                if window is None and len(self._windows) >= self.cards_tracked_max:
                    self._windows = {k: w for k, w in self._windows.items() if w[0] == minute}
                    if len(self._windows) >= self.cards_tracked_max:
                        self._windows = {}
                window = self._windows[card_key] = [minute, 0]
            if window[1] >= self.per_minute_max:
                return False
            window[1] += 1
            return True
