"""A study as one web page: `ticketlab report RUN... --out report.html` (docs/trackers.md).

`page` assembles the HTML (one file: styles, a table sorter and every figure inline as SVG,
nothing fetched), `sections` reads the store into its parts, `figures` draws them.
"""

from ticketlab.report.page import write_report

__all__ = ["write_report"]
