"""A FleetInvoice as files a fleet customer reads: CSV (one row per total, then one per
transaction) and PDF (reportlab: a summary, tables by product, card, vehicle and driver,
then every transaction counted). Money as decimal text in its currency, litres to the
millilitre: written from integers, never through floats."""
import csv

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from cardgate.gateway.money import decimal_text, litres_text
from cardgate.gateway.office.export import row_of

SECTIONS = (("product", "by_product"), ("card", "by_card"), ("vehicle", "by_vehicle"),
            ("driver", "by_driver"))
CSV_COLUMNS = ("section", "key", "name", "sales", "litres", "amount")


def _summary(invoice) -> list:
    money = invoice.currency
    return [("charged", decimal_text(invoice.charged_minor, money)),
            ("refunded", decimal_text(invoice.refunded_minor, money)),
            ("total", decimal_text(invoice.total_minor, money)),
            ("discount given", decimal_text(invoice.discount_minor, money)),
            ("litres", litres_text(invoice.volume_ml))]


GIVEN_BACK = ("REFUND", "REVERSAL")    # lines of an invoice that give money back


def _signed(line) -> str:
    """What a transaction of the invoice counts: a sale's charge, or minus what was
    given back."""
    amount = line.approved.amount_minor
    return decimal_text(-amount if line.operation in GIVEN_BACK else amount, line.approved.currency)


def write_csv(invoice, path):
    with open(path, "w", encoding="utf-8", newline="") as out:
        rows = csv.writer(out, lineterminator="\n")
        rows.writerow(CSV_COLUMNS)
        for name, value in _summary(invoice):
            rows.writerow(("summary", name, "", "", "", value))
        for section, field in SECTIONS:
            for t in getattr(invoice, field):
                rows.writerow((section, t.key or "(none)", t.name, t.sales, litres_text(t.volume_ml),
                               decimal_text(t.amount_minor, invoice.currency)))
        for line in invoice.lines:
            row = row_of(line)
            rows.writerow(("transaction", row["local_time"], row["operation"], row["masked_pan"],
                           row["litres"], _signed(line)))


_GRID = TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8edf3")),
                    ("ALIGN", (-3, 1), (-1, -1), "RIGHT"),
                    ("FONTSIZE", (0, 0), (-1, -1), 8)])


def write_pdf(invoice, path, issuer: str = "cardgate"):
    styles = getSampleStyleSheet()
    money = invoice.currency
    story = [Paragraph(f"Fleet invoice, contract {invoice.contract_id}", styles["Title"]),
             Paragraph(f"{issuer}. Period {invoice.local_from} to {invoice.local_until}, "
                       f"amounts in {money}.", styles["Normal"]), Spacer(1, 5 * mm)]
    summary = Table([("", money)] + _summary(invoice), hAlign="LEFT")
    summary.setStyle(_GRID)
    story += [summary, Spacer(1, 5 * mm)]
    for section, field in SECTIONS:
        totals = getattr(invoice, field)
        if not totals:
            continue
        story.append(Paragraph(f"By {section}", styles["Heading2"]))
        table = Table([(section, "name", "sales", "litres", "amount")] +
                      [(t.key or "(none)", t.name, t.sales, litres_text(t.volume_ml),
                        decimal_text(t.amount_minor, money)) for t in totals],
                      hAlign="LEFT", repeatRows=1)
        table.setStyle(_GRID)
        story.append(table)
    story.append(Paragraph("Transactions", styles["Heading2"]))
    rows = [("time", "operation", "card", "vehicle", "driver", "products", "litres", "amount")]
    for line in invoice.lines:
        row = row_of(line)
        rows.append((row["local_time"][:16].replace("T", " "), row["operation"], row["masked_pan"],
                     row["vehicle_id"], row["driver_id"], row["products"], row["litres"],
                     _signed(line)))
    table = Table(rows, hAlign="LEFT", repeatRows=1)
    table.setStyle(_GRID)
    story.append(table)
    SimpleDocTemplate(str(path), pagesize=A4, title=f"Fleet invoice {invoice.contract_id}",
                      leftMargin=12 * mm, rightMargin=12 * mm).build(story)
