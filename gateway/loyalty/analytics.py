"""Program analytics over a period, from the journal: active cards and transactions,
average check and purchase frequency, retention against the period before, points
earned, redeemed and expired, and breakage (expired / earned).

Every sale is in the journal: purchases and completions as money (to the range's
merchant account), sales paid otherwise as their statistical entry (the card's
sales-elsewhere account), and their returns the other way; points by the range's
points accounts: earned (from issued), returned (back to issued), redeemed (to
redeemed, less reversed sales paid with points), expired. Adjustments are not counted.
The journal alone answers, in one pass per period (fastcore.reports)."""
import collections

from cardgate.fastcore import records, reports
from cardgate.gateway.store.journal_period import first_seq_at

Analytics = collections.namedtuple(
    "Analytics", "active_cards transactions sales_minor returns_minor average_check_minor "
    "purchases_per_card_x100 previous_active_cards retained_cards retention_bp points_earned "
    "points_redeemed points_expired points_returned breakage_bp")


def analyze(store, txn, program, from_s: int, until_s: int) -> Analytics:
    """The program's figures for [from_s, until_s); retention against the period of the
    same length just before."""
    system_ranges = {records.SYSTEM_OWNER_BASE + r for r in program.range_ids}

    def scan(since_s, until_s, with_points):
        return reports.period_figures(txn, store.db_journal, first_seq_at(store, txn, since_s),
                                      until_s, system_ranges, with_points)

    cards, transactions, sales, returns, earned, redeemed, expired, returned = \
        scan(from_s, until_s, True)
    before = scan(2 * from_s - until_s, from_s, False)[0]
    active, retained = len(cards), len(cards & before)
    return Analytics(
        active, transactions, sales, returns,
        sales // transactions if transactions else 0,
        transactions * 100 // active if active else 0,
        len(before), retained, retained * 10_000 // len(before) if before else 0,
        earned, redeemed, expired, returned, expired * 10_000 // earned if earned else 0)
