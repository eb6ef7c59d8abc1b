"""The depth-curve plot of the API benchmark: docs/img/list-depth.png."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def plot_depth(results: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = results["summary"]["depth"]
    fig, (ax_abs, ax_rel) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {
        "keyset (django-orders)": "o-",
        "OR-expanded keyset": "s--",
        "DRF LimitOffsetPagination": "^:",
        "OFFSET without COUNT": "v-.",
    }
    for paginator, by_depth in curve.items():
        depths = sorted(int(d) for d in by_depth)
        rps = [by_depth[d if d in by_depth else str(d)]["rps"] for d in depths]
        style = styles.get(paginator, "o-")
        ax_abs.plot([d / 1000 for d in depths], rps, style, label=paginator)
        ax_rel.plot([d / 1000 for d in depths], [r / rps[0] for r in rps], style, label=paginator)
    ax_abs.set_title("List page of 20: requests/s (8 connections)")
    ax_abs.set_ylabel("requests/s")
    ax_rel.set_title("Relative to the same paginator's page 1")
    ax_rel.set_ylabel("× page 1")
    ax_rel.axhline(0.8, color="grey", linewidth=0.8, linestyle="--")
    ax_rel.text(1, 0.82, "target 0.8 ×", color="grey", fontsize=8)
    for ax in (ax_abs, ax_rel):
        ax.set_xlabel("depth (thousands of rows skipped)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(
        f"Tenant of 200,000 orders, PostgreSQL {m['postgres']}, {m['date_utc']} (bench/run_api.py)",
        fontsize=9,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    # Re-plot from a results file: python bench/plot.py bench/results/api-latest.json
    src = Path(
        sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "api-latest.json"
    )
    print(
        plot_depth(
            json.loads(src.read_text()),
            Path(__file__).resolve().parent.parent / "docs" / "img" / "list-depth.png",
        )
    )
