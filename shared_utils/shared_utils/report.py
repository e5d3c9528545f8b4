"""What every benchmark's report shares: a headless pyplot, figures saved the same way, and the cells that
show the evidence (a paired difference with its interval and verdict, a timed ratio with its IQR).

The benchmarks keep their own tables and plots (what to show is each study's own); this is the formatting they
would otherwise each write again.
"""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: benchmarks run on machines without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Tight layout, 110 dpi, then closed (a long benchmark draws many)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def diff_cell(entry: dict, digits: int = 2) -> str:
    """A comparison entry (``shared_utils.stats.comparison``) as ``+1.23 [+0.40, +2.01]``: the seed-averaged
    difference and its 95% paired-bootstrap interval."""
    lo, hi = entry["ci95"]
    return f"{entry['mean']['diff']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def ratio_cell(entry: dict) -> str:
    """A timed ratio (``shared_utils.timing.ratio``) as ``1.07 (IQR 1.02–1.11)``."""
    return f"{entry['median']:.2f} (IQR {entry['iqr'][0]:.2f}–{entry['iqr'][1]:.2f})"


def op_family_lines(profiled: dict) -> list[str]:
    """Markdown: ms per call and share of each operator family, one column per profiled candidate."""
    names = list(profiled)
    families = [k for k in next(iter(profiled.values())) if k != "total_ms"]
    lines = ["", "Where the time goes (`torch.profiler`, self time per call by operator family; "
             "`shared_utils.timing.time_by_op_family`):", "",
             "| family | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for fam in families:
        lines.append(f"| {fam} | " + " | ".join(f"{profiled[n][fam]['ms']:.0f} ms ({profiled[n][fam]['share']:.0%})"
                                                 for n in names) + " |")
    lines.append("| total | " + " | ".join(f"{profiled[n]['total_ms']:.0f} ms" for n in names) + " |")
    return lines
