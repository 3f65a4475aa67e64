"""Encode a personalization job: for each card, wait for it in a PC/SC reader,
personalize its chip, encode its stripe, check both, record the result and report it.

A card is never encoded twice and none is skipped, across interruptions: before anything
is written to a chip its UID is bound to the job card in the results file (results.py).
A chip put back after an interruption finishes the card it was bound to; a chip already
encoded, or carrying the job's application without being bound, is refused. Each run
tries every card not yet encoded once; a card that fails (pulled out mid-way, a bad
stripe) is recorded as failed with the reason and is tried again by the next run.
Cards are taken one at a time: after each, the encoder waits for it to leave its reader.
"""
import time

from cardgate.devices import desfire, msr, pcsc, personalize, tracks
from cardgate.gateway.security.pan import mask

VALUE_LIMIT_NONE = 0


class CardRefused(Exception):
    """The card in the reader cannot take a job card (it says why); take it out."""


class NoCard(Exception):
    """No card came within the wait."""


def chip_profile(card) -> personalize.ChipProfile:
    limit = card.chip["value_limit_minor"]
    return personalize.ChipProfile(aid=bytes.fromhex(card.chip["aid"]), program_id=card.chip["program_id"],
                                   offline_balance_minor=0 if limit else None,
                                   value_limit_minor=limit or personalize.ChipProfile.value_limit_minor,
                                   system_id=bytes.fromhex(card.chip.get("system_id", personalize.SYSTEM_ID.hex())))


class Encoder:
    """readers: PC/SC reader names to take cards from; encoder: a devices.msr.Msr206;
    report(outcome) sends one outcome to the gateway (raising if it cannot);
    say(text) tells the operator; advance() moves the progress on by one card."""

    def __init__(self, job, results, readers, encoder, master_key: bytes, report,
                 say=print, advance=lambda: None, card_wait_s: float = None, poll_s: float = 0.05):
        self.job = job
        self.results = results
        self.readers = list(readers)
        self.encoder = encoder
        self.master_key = master_key
        self.report = report
        self.say = say
        self.advance = advance
        self.card_wait_s = card_wait_s
        self.poll_s = poll_s
        # Cards not encoded yet, in job order (a dict: taking one out is O(1)).
        self.todo = dict.fromkeys(c.seq for c in job.cards if not results.encoded(c.seq))
        self.aid = job.header["chip"]["aid"]          # every card of a job has the job's profile

    # ---- the run -----------------------------------------------------------------------

    def run(self) -> tuple[int, int]:
        """(cards encoded, cards failed) in this run."""
        self.send_unreported()
        encoded = failed = 0
        states = pcsc.ReaderStates()
        try:
            while self.todo:
                reader = self._wait_for_card(states)
                try:
                    outcome = self._take(reader)
                except CardRefused as exc:
                    self.say(f"{reader}: card refused: {exc}; take it out")
                else:
                    if outcome is not None:
                        encoded += outcome.encoded
                        failed += not outcome.encoded
                self._wait_for_removal(states, reader)
        finally:
            states.close()
        self.send_unreported()
        return encoded, failed

    def _wait_for_card(self, states) -> str:
        deadline = None if self.card_wait_s is None else time.monotonic() + self.card_wait_s
        while True:
            holding = states.present(self.readers, int(self.poll_s * 1000))
            for reader in self.readers:                 # in the order given
                if reader in holding:
                    return reader
            if deadline is not None and time.monotonic() > deadline:
                raise NoCard(f"no card came into {', '.join(self.readers)} within {self.card_wait_s:g} s")
            time.sleep(self.poll_s)

    def _wait_for_removal(self, states, reader):
        while reader in states.present([reader], int(self.poll_s * 1000)):
            time.sleep(self.poll_s)

    def _take(self, reader):
        """Encode the card in `reader`; the outcome (None if it left before it was bound)."""
        try:
            connection = pcsc.Connection(reader)
        except pcsc.PcscError as exc:
            raise CardRefused(str(exc)) from None
        try:
            d = desfire.Desfire(connection.transmit)
            try:
                uid = personalize.card_uid(d)
                seq = self._seq_for(d, uid)
            except (pcsc.PcscError, desfire.DesfireError) as exc:
                raise CardRefused(f"cannot read the chip ({exc})") from None
            self.results.started(seq, uid)
            card = self.job.cards[seq - 1]
            try:
                self._personalize(d, uid, card)
            except (pcsc.PcscError, desfire.DesfireError, msr.MsrError, tracks.TrackError) as exc:
                outcome = self.results.finished(seq, uid, False, str(exc)[:200])
                self.say(f"card {seq} {mask(card.pan)} FAILED in {reader}: {exc}")
            else:
                outcome = self.results.finished(seq, uid, True)
                self.say(f"card {seq} {mask(card.pan)} encoded in {reader} (chip {uid.hex().upper()})")
                self.advance()
            del self.todo[seq]
            self._send(outcome)
            return outcome
        finally:
            connection.close()

    def _seq_for(self, d, uid: bytes) -> int:
        bound = self.results.seq_on_chip(uid)
        if bound is not None:
            if self.results.encoded(bound):
                raise CardRefused(f"this chip already carries card {bound} of the job")
            if bound in self.todo:
                return bound                            # finish what was started on it
            raise CardRefused(f"this chip was started as card {bound}, which this run has tried already")
        d.select_application(desfire.PICC)
        if d.get_key_version(0) != personalize.FACTORY_VERSION:
            raise CardRefused("its card master key is not the factory's and this job never started "
                              "on it: not a blank card")
        try:
            d.select_application(bytes.fromhex(self.aid))
        except desfire.DesfireError as exc:
            if exc.status != 0xA0:                      # APPLICATION_NOT_FOUND: blank, as it should be
                raise
        else:
            raise CardRefused(f"the chip already carries application {self.aid} and this job never "
                              "started on it: not a blank card")
        # The first card never started; else the first whose chip went missing.
        return next((s for s in self.todo if s not in self.results.uid_of), next(iter(self.todo)))

    def _personalize(self, d, uid: bytes, card):
        profile = chip_profile(card)
        personalize.personalize(d, uid, profile, card.pan, card.expiry_yymm, self.master_key)
        self.encoder.write_iso(card.track1[1:-1], card.track2[1:-1])     # the encoder adds sentinels
        track1, track2, _ = self.encoder.read_iso()
        if (track1, track2) != (card.track1, card.track2):
            raise msr.MsrError("the stripe read back differs from the job's tracks")
        personalize.verify(d, uid, profile, card.pan, card.expiry_yymm, self.master_key)

    # ---- reporting -----------------------------------------------------------------------

    def _send(self, outcome) -> bool:
        try:
            self.report(outcome)
        except Exception as exc:          # the gateway unreachable: kept for the next run or import
            self.say(f"card {outcome.seq}: result not reported yet ({type(exc).__name__}: {exc})")
            return False
        self.results.mark_reported(outcome)
        return True

    def send_unreported(self) -> int:
        """Send the outcomes the gateway does not have yet; how many are still unsent."""
        return sum(not self._send(o) for o in self.results.unreported())
