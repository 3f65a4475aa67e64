"""Money settlement between coalition partners, from the transactions of a period.

A card's value is issued by the partner whose outlet first loaded it (the card's issuer,
kept by the core): that partner holds the money and owes it until it is spent. So value
that moves at another partner's outlet is settled with the issuer:

  loaded at P (a card of issuer I)          P collected the money: P pays I
  spent at P (purchase, completion)         I pays P what was spent
  given back at P (refund; reversal of a    the other way round: P pays I
  sale, where the sale was made)
  reversal of a load at P, or of a refund   I pays P

Flows between a partner and itself, or with no partner (an outlet of none, a card no
partner loaded, a contract's credit), settle nothing. Per currency: each partner's
pays / receives / net, and one transfer per pair of partners, net; the nets sum to zero.
"""
import collections

from cardgate.fastcore.records import APPROVED_RESULTS, Op

SPENT = (Op.PURCHASE, Op.COMPLETE)

PartnerMoney = collections.namedtuple("PartnerMoney", "partner_id loaded_minor spent_minor "
                                      "pays_minor receives_minor net_minor")
MoneySettlement = collections.namedtuple("MoneySettlement", "currency partners transfers")


def _given_back(tx) -> bool:
    """A refund of a purchase, or a reversal of a sale paid with the card (a loyalty
    sale was paid otherwise: its return moves no card money)."""
    return (tx.op == Op.REFUND and tx.ref_op == Op.PURCHASE) or \
        (tx.op == Op.REVERSAL and tx.ref_op in SPENT)


def flow_of(tx):
    """(payer, payee, amount) that an approved transaction moves between partners, or None."""
    if tx.result not in APPROVED_RESULTS or not tx.approved_minor:
        return None
    where, issuer = tx.partner_id, tx.issuer_partner
    if not where or not issuer or where == issuer:
        return None
    if tx.op == Op.LOAD or _given_back(tx):
        return where, issuer, tx.approved_minor
    if tx.op in SPENT or (tx.op == Op.REVERSAL and tx.ref_op in (Op.LOAD, Op.REFUND)):
        return issuer, where, tx.approved_minor
    return None


def _activity(tx) -> tuple:
    """(loaded, spent) at the transaction's partner: what it adds to each."""
    if tx.result not in APPROVED_RESULTS:
        return 0, 0
    if tx.op == Op.LOAD:
        return tx.approved_minor, 0
    if tx.op in SPENT or (tx.op == Op.REVERSAL and tx.ref_op == Op.REFUND):
        return 0, tx.approved_minor
    if _given_back(tx):
        return 0, -tx.approved_minor
    if tx.op == Op.REVERSAL and tx.ref_op == Op.LOAD:
        return -tx.approved_minor, 0
    return 0, 0


def settle_money(transactions) -> list:
    """[MoneySettlement] per currency, of records.Transaction lines (a period's)."""
    flows = collections.defaultdict(collections.Counter)        # currency -> (payer, payee)
    loaded = collections.defaultdict(collections.Counter)       # currency -> partner
    spent = collections.defaultdict(collections.Counter)
    for tx in transactions:
        more_loaded, more_spent = _activity(tx)
        if tx.partner_id and (more_loaded or more_spent):
            loaded[tx.currency][tx.partner_id] += more_loaded
            spent[tx.currency][tx.partner_id] += more_spent
        flow = flow_of(tx)
        if flow is not None:
            payer, payee, amount = flow
            flows[tx.currency][(payer, payee)] += amount
    settled = []
    for currency in sorted(set(flows) | set(loaded)):
        pays, receives = collections.Counter(), collections.Counter()
        for (payer, payee), amount in flows[currency].items():
            pays[payer] += amount
            receives[payee] += amount
        partners = sorted(set(loaded[currency]) | set(pays) | set(receives))
        rows = [PartnerMoney(p, loaded[currency][p], spent[currency][p], pays[p], receives[p],
                             receives[p] - pays[p]) for p in partners]
        transfers = []
        for a, b in sorted({tuple(sorted(pair)) for pair in flows[currency]}):
            net = flows[currency][(a, b)] - flows[currency][(b, a)]
            if net:
                transfers.append((a, b, net) if net > 0 else (b, a, -net))
        settled.append(MoneySettlement(currency, rows, transfers))
    return settled
