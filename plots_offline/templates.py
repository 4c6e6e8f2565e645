"""DVC plot templates of this project, derived from DVC's own (dvc-render) so they follow it.

`confusion_counts.json`: DVC's `confusion` template with its "show values" checkbox ticked,
so each cell prints its count (DVC's default hides them behind an unticked box).

    python -m plots_offline.templates   # rewrite the committed template files
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
CONFUSION_COUNTS_PATH = PACKAGE_DIR / "confusion_counts.json"


def confusion_counts_template() -> dict[str, Any]:
    """DVC's confusion template with the counts shown by default."""
    from dvc_render.vega_templates import ConfusionTemplate

    template = copy.deepcopy(ConfusionTemplate.DEFAULT_CONTENT)
    (show_values,) = [p for p in template["params"] if p["name"] == "showValues"]
    show_values["value"] = True
    return template


def render(template: dict[str, Any]) -> str:
    return json.dumps(template, indent=2) + "\n"


def main() -> None:
    CONFUSION_COUNTS_PATH.write_text(render(confusion_counts_template()))
    print(f"wrote {CONFUSION_COUNTS_PATH}")


if __name__ == "__main__":
    main()
