from shared_utils.report import diff_cell, pyplot, ratio_cell, save_figure, verdict_cell
from shared_utils.stats import NOT_NEEDED, ONE_SEED_EACH, comparison


def test_cells_show_the_difference_interval_and_ratio():
    import numpy as np

    entry = comparison("a", [2.0, 3.0], "b", [1.0, 1.0], np.array([0.5, 1.0, 1.5, 2.0]), [0, 1])
    lo, hi = np.percentile([0.5, 1.0, 1.5, 2.0], [2.5, 97.5])
    assert diff_cell(entry) == f"+1.50 [{lo:+.2f}, {hi:+.2f}]"
    assert ratio_cell({"median": 1.0712, "iqr": [1.02, 1.114], "ci95": [1.004, 1.136]}) == "1.07 (95% CI 1.00–1.14)"
    assert verdict_cell({"verdict": "win", "seed_test": "welch", "seed_p": 0.0123}) == "win (seed p 0.012)"
    assert verdict_cell({"verdict": "tie", "seed_test": ONE_SEED_EACH, "seed_p": None}) == "tie (one seed each)"
    assert verdict_cell({"verdict": "win", "seed_test": NOT_NEEDED, "seed_p": None}) == "win"


def test_figures_are_saved_headless_and_closed(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.bar(["a"], [1.0], yerr=[0.1])
    save_figure(fig, tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG" and not plt.get_fignums()
