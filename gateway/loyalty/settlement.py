"""Coalition settlement from the journal: points issued at a partner are its liability;
when another partner's customers redeem them there, the issuer pays that partner their
value at the program's rate. Who owes whom per period, summing to zero."""
import collections

from cardgate.fastcore import records, reports
from cardgate.gateway.store.journal_period import first_seq_at

Settlement = collections.namedtuple("Settlement", "partners transfers")
PartnerRow = collections.namedtuple("PartnerRow", "partner_id points_issued points_redeemed "
                                    "points_owed_out pays_minor points_owed_in receives_minor "
                                    "net_minor")


def value_of(points: int, point_value_millis: int) -> int:
    """Money (minor units) of points at the program's rate, rounded down."""
    return points * point_value_millis // 1000


def settle(store, txn, program, from_s: int, until_s: int) -> Settlement:
    """The program's settlement over journal entries of [from_s, until_s)."""
    system_ranges = {records.SYSTEM_OWNER_BASE + r for r in program.range_ids}
    issued, redeemed, flows = (collections.Counter(d) for d in reports.period_flows(
        txn, store.db_journal, first_seq_at(store, txn, from_s), until_s, system_ranges))
    rate = program.point_value_millis
    out_points, in_points = collections.Counter(), collections.Counter()
    pays, receives = collections.Counter(), collections.Counter()
    for (issuer, redeemer), points in flows.items():
        out_points[issuer] += points
        in_points[redeemer] += points
        pays[issuer] += value_of(points, rate)
        receives[redeemer] += value_of(points, rate)
    partners = sorted(set(issued) | set(redeemed) | set(out_points) | set(in_points))
    rows = [PartnerRow(p, issued[p], redeemed[p], out_points[p], pays[p], in_points[p],
                       receives[p], receives[p] - pays[p]) for p in partners]
    transfers = []
    for a, b in sorted({tuple(sorted(pair)) for pair in flows}):
        net = value_of(flows[(a, b)], rate) - value_of(flows[(b, a)], rate)
        points = flows[(a, b)] - flows[(b, a)]
        if net or points:
            transfers.append((a, b, points, net) if net >= 0 else (b, a, -points, -net))
    return Settlement(rows, transfers)
