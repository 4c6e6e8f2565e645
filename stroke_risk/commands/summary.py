"""The plain-language summary `make run` ends with, from the committed reports.

The library it calls: stroke_risk.reports.summary.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stroke_risk.reports.summary import summary_lines


def main() -> None:
    reports = (Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")) / "reports"
    evaluation, metrics, data_summary = (
        json.loads((reports / name).read_text())
        for name in ("evaluation.json", "metrics.json", "data_summary.json")
    )
    print("\n".join(summary_lines(evaluation, metrics, data_summary)))


if __name__ == "__main__":
    main()
