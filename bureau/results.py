"""The bureau's results file of one job: what was done to which card, kept on disk as it
happens, so an interrupted run goes on where it stopped and never encodes a card twice.

JSON Lines, appended and flushed to disk line by line:
    {"format": "cardgate-bureau-results", "version": 1, "job_id": "…"}
    {"event": "started", "seq": 2, "uid": "04…", "at_s": …}
    {"event": "encoded", "seq": 2, "uid": "04…", "reason": "", "request_id": "…", "at_s": …}
    {"event": "failed", "seq": 3, "uid": "04…", "reason": "the card left …", "request_id": "…", "at_s": …}
    {"event": "reported", "request_id": "…"}

"started" binds a job card to a chip (its UID) before anything is written to it; an
outcome (encoded or failed) carries the request id its report to the gateway uses, so
resending it is safe; "reported" says the gateway has it. `cardgate bureau import`
sends the outcomes of such a file to the gateway.
"""
import dataclasses
import json
import os
import pathlib
import time
import uuid

FORMAT = "cardgate-bureau-results"
VERSION = 1
ENCODED, FAILED, STARTED, REPORTED = "encoded", "failed", "started", "reported"


class ResultsError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Outcome:
    seq: int
    encoded: bool
    reason: str
    uid: str
    request_id: str


class ResultsLog:
    def __init__(self, path, job_id: str, clock=time.time):
        self.path = pathlib.Path(path)
        self.job_id = job_id
        self.clock = clock
        self.result = {}              # seq -> ENCODED or FAILED, the latest outcome
        self.uid_of = {}              # seq -> UID (hex) of the chip it was last started on
        self._seq_on = {}             # and back: UID -> that seq (while it is still the seq's chip)
        self.outcomes = []            # every outcome, in order
        self.reported = set()         # request ids the gateway has
        if self.path.exists():
            self._load()
            self._file = open(self.path, "a", encoding="utf-8")
        else:
            self._file = open(self.path, "x", encoding="utf-8")
            self._append({"format": FORMAT, "version": VERSION, "job_id": job_id})

    @classmethod
    def read(cls, path) -> "ResultsLog":
        """An existing results file, for import (its job id from its header)."""
        try:
            first = json.loads(pathlib.Path(path).read_text(encoding="utf-8").split("\n", 1)[0])
        except (OSError, ValueError) as exc:
            raise ResultsError(f"{path}: not a results file ({exc})") from None
        if not isinstance(first, dict) or first.get("format") != FORMAT:
            raise ResultsError(f"{path}: not a cardgate bureau results file")
        return cls(path, first["job_id"])

    def _load(self):
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
            except ValueError:
                if n == len(lines):
                    break                       # a line cut short by a crash: never acted on
                raise ResultsError(f"{self.path}:{n}: not JSON") from None
            if n == 1:
                if entry.get("format") != FORMAT or entry.get("version") != VERSION:
                    raise ResultsError(f"{self.path}: not a cardgate bureau results file")
                if entry.get("job_id") != self.job_id:
                    raise ResultsError(f"{self.path} holds the results of job {entry.get('job_id')}, "
                                       f"not of job {self.job_id}")
                continue
            self._apply(entry)
        with open(self.path, "rb+") as f:       # drop a cut line so the next one starts clean
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def _apply(self, entry):
        event = entry.get("event")
        if event == STARTED:
            self._seq_on.pop(self.uid_of.get(entry["seq"]), None)
            self.uid_of[entry["seq"]] = entry["uid"]
            self._seq_on[entry["uid"]] = entry["seq"]
        elif event in (ENCODED, FAILED):
            self.result[entry["seq"]] = event
            self.outcomes.append(Outcome(entry["seq"], event == ENCODED, entry["reason"],
                                         entry["uid"], entry["request_id"]))
        elif event == REPORTED:
            self.reported.add(entry["request_id"])

    def _append(self, entry):
        self._file.write(json.dumps(entry, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if "event" in entry:
            self._apply(entry)

    def close(self):
        self._file.close()

    # ---- recording -----------------------------------------------------------------

    def started(self, seq: int, uid: bytes):
        self._append({"event": STARTED, "seq": seq, "uid": uid.hex().upper(), "at_s": int(self.clock())})

    def finished(self, seq: int, uid: bytes, encoded: bool, reason: str = "") -> Outcome:
        self._append({"event": ENCODED if encoded else FAILED, "seq": seq, "uid": uid.hex().upper(),
                      "reason": reason, "request_id": str(uuid.uuid4()), "at_s": int(self.clock())})
        return self.outcomes[-1]

    def mark_reported(self, outcome: Outcome):
        self._append({"event": REPORTED, "request_id": outcome.request_id})

    # ---- questions -----------------------------------------------------------------

    def encoded(self, seq: int) -> bool:
        return self.result.get(seq) == ENCODED

    def seq_on_chip(self, uid: bytes):
        """The job card last started on this chip, if the chip is still the one it is
        bound to (None: the chip never took part, or its card went to another chip)."""
        return self._seq_on.get(uid.hex().upper())

    def unreported(self) -> list:
        return [o for o in self.outcomes if o.request_id not in self.reported]
