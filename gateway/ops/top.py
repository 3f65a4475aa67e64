"""`cardgate top`: a live view of a running gateway in the terminal, read from its
Prometheus endpoint every interval: requests a second now and over the last minutes,
approvals and declines with the top reasons, p50 / p99 latency, batch size, queue depth
and the store. Ctrl-C ends it.
"""
import dataclasses
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

SPARKS = "▁▂▃▄▅▆▇█"
HISTORY = 120                          # rates kept for the sparkline (2 minutes at 1 s)
APPROVED = ("RESULT_CODE_APPROVED", "RESULT_CODE_PARTIALLY_APPROVED")


@dataclasses.dataclass
class Scrape:
    at: float
    requests: dict          # result -> count (every RPC and operation)
    declines: dict          # reason -> count
    latency_buckets: dict   # le -> cumulative count (every RPC)
    batch_sum: float
    batch_count: float
    gauges: dict
    throttled: dict = dataclasses.field(default_factory=dict)   # reason -> count


THROTTLE_WORDS = {"rate": "terminal requests/s", "operations": "terminal operations/s",
                  "admission": "calls at once", "velocity": "card velocity",
                  "queue": "writer queue full"}
GAUGES = {"cardgate_writer_queue_depth": lambda a, b: a + b,   # per worker: added up
          "cardgate_store_commit_ok": min,                      # the store's: the worst
          "cardgate_holds_outstanding": max, "cardgate_store_file_bytes": max,
          "cardgate_store_map_used_ratio": max}


def scrape(addresses: str, timeout_s: float = 5.0) -> Scrape:
    """One reading of a gateway, or of every worker of `serve --workers` (addresses
    comma-separated): counters and histograms added up, gauges combined as GAUGES says
    (every worker sees the same store)."""
    requests, declines, buckets, gauges, throttled = {}, {}, {}, {}, {}
    batch = {"cardgate_batch_requests_sum": 0.0, "cardgate_batch_requests_count": 0.0}
    for address in addresses.split(","):
        text = urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout_s).read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "cardgate_requests_total":
                    requests[s.labels["result"]] = requests.get(s.labels["result"], 0) + s.value
                elif s.name == "cardgate_declines_total":
                    declines[s.labels["reason"]] = declines.get(s.labels["reason"], 0) + s.value
                elif s.name == "cardgate_throttled_total":
                    throttled[s.labels["reason"]] = throttled.get(s.labels["reason"], 0) + s.value
                elif s.name == "cardgate_request_seconds_bucket":
                    le = float(s.labels["le"])
                    buckets[le] = buckets.get(le, 0) + s.value
                elif s.name in batch:
                    batch[s.name] += s.value
                elif s.name in GAUGES:
                    gauges[s.name] = GAUGES[s.name](gauges[s.name], s.value) if s.name in gauges else s.value
    return Scrape(time.monotonic(), requests, declines, buckets, batch["cardgate_batch_requests_sum"],
                  batch["cardgate_batch_requests_count"], gauges, throttled)


def quantile(buckets: dict, q: float):
    """The q-quantile of a cumulative histogram ({le: count}), by linear interpolation
    in its bucket; None without observations."""
    edges = sorted(buckets)
    total = buckets[edges[-1]] if edges else 0
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0
    for le in edges:
        if buckets[le] >= rank:
            if le == float("inf"):
                return lower
            inside = buckets[le] - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1)
        lower, below = le, buckets[le]
    return lower


def sparkline(values) -> str:
    top = max(values, default=0)
    if not top:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1) + 0.5))] for v in values)


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


class Dashboard:
    def __init__(self, address: str, interval_s: float = 1.0):
        self.address = address
        self.interval_s = interval_s
        self.previous = self.last = None
        self.rates = []
        self.error = ""

    def update(self):
        try:
            now = scrape(self.address)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            self.error = f"cannot read http://{self.address}/metrics: {exc}"
            return
        self.error = ""
        if self.last is not None:
            dt = max(now.at - self.last.at, 1e-6)
            self.rates = (self.rates + [(sum(now.requests.values()) - sum(self.last.requests.values())) / dt])[-HISTORY:]
        self.previous, self.last = self.last, now

    def render(self):
        if self.last is None:
            return Panel(self.error or "connecting…", title=f"cardgate top · {self.address}")
        s = self.last
        total = sum(s.requests.values())
        approved = sum(s.requests.get(r, 0) for r in APPROVED)
        declined = sum(s.declines.values())
        recent = self.previous and {le: n - self.previous.latency_buckets.get(le, 0)
                                    for le, n in s.latency_buckets.items()}
        window = recent if recent and any(recent.values()) else s.latency_buckets
        head = Table.grid(padding=(0, 3))
        head.add_row(f"[b]{self.rates[-1] if self.rates else 0:,.1f}[/b] req/s now",
                     f"requests [b]{total:,.0f}[/b]", f"approved [b]{approved:,.0f}[/b]",
                     f"declined [b]{declined:,.0f}[/b]")
        head.add_row(f"p50 [b]{_ms(quantile(window, 0.5))}[/b]", f"p99 [b]{_ms(quantile(window, 0.99))}[/b]",
                     f"batch [b]{s.batch_sum / s.batch_count if s.batch_count else 0:.1f}[/b] req",
                     f"queue [b]{s.gauges.get('cardgate_writer_queue_depth', 0):.0f}[/b]")
        store_ok = s.gauges.get("cardgate_store_commit_ok", 1) == 1
        head.add_row(f"store [b]{s.gauges.get('cardgate_store_file_bytes', 0) / 2**20:,.1f} MiB[/b]",
                     f"map used [b]{s.gauges.get('cardgate_store_map_used_ratio', 0):.1%}[/b]",
                     f"holds [b]{s.gauges.get('cardgate_holds_outstanding', 0):.0f}[/b]",
                     "[green]committing[/green]" if store_ok else "[red b]NOT COMMITTING[/red b]")
        reasons = Table("decline reason", "count", box=None, padding=(0, 2))
        for reason, count in sorted(s.declines.items(), key=lambda kv: -kv[1])[:5]:
            reasons.add_row(reason.lower().replace("_", " "), f"{count:,.0f}")
        # Refused RESOURCE_EXHAUSTED: not declines of the core, but callers held back.
        for reason, count in sorted(s.throttled.items(), key=lambda kv: -kv[1]):
            if count:
                reasons.add_row(f"throttled: {THROTTLE_WORDS.get(reason, reason)}", f"{count:,.0f}")
        shown = self.rates[-60:]
        rate_line = f"req/s, last {len(shown) * self.interval_s:.0f} s: {sparkline(shown)}"
        parts = [head, "", rate_line, "", reasons]
        if self.error:
            parts.append(f"[red]{self.error}[/red]")
        return Panel(Group(*parts), title=f"cardgate top · {self.address}")


def run(address: str, interval_s: float = 1.0, once: bool = False, console: Console = None) -> int:
    console = console or Console()
    board = Dashboard(address, interval_s)
    board.update()
    if once:
        if board.error:
            console.print(board.error)
            return 1
        time.sleep(min(interval_s, 1.0))
        board.update()
        console.print(board.render())
        return 0
    try:
        with Live(board.render(), console=console, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(interval_s)
                board.update()
                live.update(board.render())
    except KeyboardInterrupt:
        return 0
