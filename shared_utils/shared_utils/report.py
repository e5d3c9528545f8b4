"""What every benchmark's report shares: a headless pyplot, figures saved the same way, and the cells that
show the evidence (a paired difference with its interval and verdict, a timed ratio with its 95% interval).

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


VERDICT_RULE = ("95% CI: two-level paired bootstrap, seeds drawn within each system, then items; verdict: win or "
                "loss only when the CI lies wholly on the side of the difference and the seed-level t-test gives "
                "p < 0.05, else tie (`shared_utils.stats`)")


def verdict_cell(entry: dict) -> str:
    """A comparison's verdict with the seed-level evidence behind it: ``win (seed p 0.012)``, ``tie (one seed
    each)``, or the bare verdict where no seed separates the two (variants of one model)."""
    from .stats import ONE_SEED_EACH

    if entry.get("seed_p") is not None:
        return f"{entry['verdict']} (seed p {entry['seed_p']:.3f})"
    if entry.get("seed_test") == ONE_SEED_EACH:
        return f"{entry['verdict']} (one seed each)"
    return entry["verdict"]


def ratio_cell(entry: dict) -> str:
    """A timed ratio (``shared_utils.timing.ratio``) as ``1.07 (95% CI 1.02–1.11)``: the median per-round ratio
    and the bootstrap interval its verdict reads."""
    return f"{entry['median']:.2f} (95% CI {entry['ci95'][0]:.2f}–{entry['ci95'][1]:.2f})"


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
