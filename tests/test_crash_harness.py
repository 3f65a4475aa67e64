"""The crash-under-load harness in the suite: 20 SIGKILL cycles of a mixed workload on
one data directory, no violation (tests/crash_harness.py says what each cycle checks)."""
import pytest
from crash_harness import run

pytestmark = pytest.mark.slow


def test_twenty_kills_under_a_mixed_load_lose_and_duplicate_nothing(tmp_path):
    lines = []
    totals = run(20, tmp_path / "data", seed=20261123, say=lines.append)
    assert totals["cycles"] == 20
    assert totals["acknowledged"] > 20 * 20, lines            # the load got going every time
    assert totals["violations"] == 0, "\n".join(totals["problems"][:20])


def test_kills_of_every_worker_at_once_lose_and_duplicate_nothing(tmp_path):
    """Two workers, each with its own writer, on one store: killed together mid-commit."""
    lines = []
    totals = run(6, tmp_path / "data", seed=20261124, say=lines.append, workers=2)
    assert totals["cycles"] == 6
    assert totals["acknowledged"] > 6 * 20, lines
    assert totals["violations"] == 0, "\n".join(totals["problems"][:20])
