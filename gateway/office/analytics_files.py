"""SalesAnalytics as files: CSV (a row per day, then per partner, outlet and product) and
a chart of the period's daily sales, active cards and points (matplotlib, PNG)."""
import csv

import matplotlib

matplotlib.use("Agg")                   # files only: no display needed
import matplotlib.pyplot as plt         # noqa: E402  (after the backend is chosen)

from cardgate.gateway.money import decimal_text, litres_text  # noqa: E402

COLUMNS = ("section", "key", "name", "sales", "returns", "transactions", "active_cards",
           "litres", "points_earned", "points_redeemed")
SECTIONS = (("day", "days"), ("partner", "by_partner"), ("outlet", "by_outlet"),
            ("product", "by_product"))


def write_csv(analytics, path):
    money = analytics.currency
    with open(path, "w", encoding="utf-8", newline="") as out:
        rows = csv.writer(out, lineterminator="\n")
        rows.writerow(COLUMNS)
        for section, field in SECTIONS + (("total", None),):
            for f in getattr(analytics, field) if field else [analytics.total]:
                rows.writerow((section, f.key or "(none)", f.name, decimal_text(f.sales_minor, money),
                               decimal_text(f.returns_minor, money), f.transactions,
                               f.active_cards, litres_text(f.volume_ml), f.points_earned,
                               f.points_redeemed))


def write_chart(analytics, path, title: str):
    """Three panels over the days: sales (bars, in the currency), active cards, points
    earned and redeemed."""
    days = [f.key[5:] for f in analytics.days]          # MM-DD
    exponent = 10 ** (len(decimal_text(1, analytics.currency).split(".")[1])
                      if "." in decimal_text(1, analytics.currency) else 0)
    figure, (sales, cards, points) = plt.subplots(3, 1, sharex=True, figsize=(10, 7.5))
    figure.suptitle(f"{title} ({analytics.time_zone} days)")
    sales.bar(days, [f.sales_minor / exponent for f in analytics.days], color="#3b6ea8")
    sales.set_ylabel(f"sales, {analytics.currency}")
    cards.plot(days, [f.active_cards for f in analytics.days], marker="o", color="#2e8b57")
    cards.set_ylabel("active cards")
    points.plot(days, [f.points_earned for f in analytics.days], marker="o", label="earned")
    points.plot(days, [f.points_redeemed for f in analytics.days], marker="o", label="redeemed")
    points.set_ylabel("points")
    points.legend()
    for axis in (sales, cards, points):
        axis.grid(axis="y", alpha=0.3)
    points.tick_params(axis="x", rotation=60)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
