"""The translation studies' reports: markdown tables and plots of ``training.json`` (``bench_training.py``),
``decoding.json`` and ``decoding_speed.json`` (``bench_decoding.py``) and the recipe/ablation files
(``bench_recipe.py``), from the JSON alone, so ``rederive_verdicts.py`` can render them again."""

from __future__ import annotations

import json
from pathlib import Path

from shared_utils.report import VERDICT_RULE, diff_cell, op_family_lines, pyplot, ratio_cell, save_figure, verdict_cell
from translation.config import recipe_fields
from translation.study import RECIPE_SYSTEMS

SPEED_WORDS = {"higher": "ours is faster", "lower": "ours is slower",
               "tie": "a tie (the 95% interval of the median spans 1.0)"}


def write_training_report(result: dict, out: Path) -> None:
    """training.md (per-seed table and comparisons) and training_bleu.png (means with seed std error bars)."""
    plt = pyplot()

    devs = result["dev_sets"]
    lines = [f"# Training benchmark ({result['device_info']['label']})", "",
             f"{result['steps']} steps of ~{result['batch_tokens']} tokens per run; the same data, tokenizer recipe, "
             f"batches, schedule and selection split for every system; checkpoint chosen on the selection split "
             f"({result['select_size']} pairs carved from the training data); {result['strategy']} decoding of the "
             "full dev sets. Mean ± seed std, every seed listed.", "",
             f"Shared recipe, chosen on the selection split: `{result['recipe']}`; ablations of ours kept there: "
             f"{', '.join(f'`{a}`' for a in result['ablations_kept']) or 'none'}.", "",
             "| system | seeds | checkpoint step | parameters | selection BLEU | "
             + " | ".join(f"{d} BLEU | {d} chrF++" for d in devs) + " |",
             "| --- | --- | --- | ---: | ---: |" + " ---: |" * (2 * len(devs))]
    for name, s in result["systems"].items():
        cells = " | ".join(f"{s[d]['bleu']['mean']:.2f} ± {s[d]['bleu']['std']:.2f} | "
                           f"{s[d]['chrf']['mean']:.2f} ± {s[d]['chrf']['std']:.2f}" for d in devs)
        lines.append(f"| {name} | {', '.join(map(str, s['seeds']))} | "
                     f"{', '.join(map(str, s.get('checkpoint_step', ['?'])))} | {s['parameters']:,} | "
                     f"{s['select_bleu']['mean']:.2f} | {cells} |")
    lines += ["", f"Paired comparisons (seed-averaged difference; {VERDICT_RULE}):", "",
              "| comparison | dev set | BLEU diff [95% CI] | verdict | chrF++ diff [95% CI] | verdict |",
              "| --- | --- | ---: | --- | ---: | --- |"]
    for key, per_dev in result["comparisons"].items():
        for d in devs:
            b, c = per_dev[d]["bleu"], per_dev[d]["chrf"]
            lines.append(f"| {key} | {d} | {diff_cell(b)} | {verdict_cell(b)} | {diff_cell(c)} | {verdict_cell(c)} |")
    tp = result["throughput"]
    r = tp["throughput_ratio_vs_marian"]
    where = result.get("throughput_device_info", result["device_info"])["label"]
    lines += ["", f"Training throughput, side by side ({where}; {tp['scheme']} vs the Marian peer, the same "
              f"{tp['batches']} batches, {r['repeats']} interleaved rounds): ours (padding-free, as `train.py` "
              f"trains) / peer {ratio_cell(r)}: {SPEED_WORDS[r['verdict']]}."]
    padded = tp.get("throughput_ratio_padded_vs_marian")
    if padded:
        lines += ["", f"Like for like, ours on the padded step (every pad position through every layer, as the "
                  f"peer runs) / peer {ratio_cell(padded)}: {SPEED_WORDS[padded['verdict']]}."]
    lines += ["", "| model | median ms per step | IQR | target tok/s | peak memory (MB) | RSS before the model (MB) |",
              "| --- | ---: | --- | ---: | ---: | ---: |"]
    for name, m in tp["models"].items():
        memory = f"{m['peak_memory_mb']:.0f} ({m['memory_kind']})" if "peak_memory_mb" in m else "as above"
        baseline = f"{m['baseline_mb']:.0f}" if "baseline_mb" in m else "–"
        lines.append(f"| {name} | {m['median_ms']:.0f} | {m['iqr_ms'][0]:.0f}–{m['iqr_ms'][1]:.0f} | "
                     f"{m['target_tokens_per_s']:.0f} | {memory} | {baseline} |")
    lines += op_family_lines(tp["time_by_op_family"])
    lines += ["", f"Ceiling against the peer (its median step time over our matmul + attention time, the part no "
              f"other cut removes): {tp['ceiling_vs_marian']:.2f}x."]
    (out / "training.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    fig, ax = plt.subplots(figsize=(5, 4))
    models = list(tp["models"].values())
    medians = [m["target_tokens_per_s"] for m in models]
    # tokens/s at the IQR's ends of the step time (a longer step is fewer tokens per second)
    low = [med - tp["target_tokens"] / (m["iqr_ms"][1] / 1e3) for med, m in zip(medians, models)]
    high = [tp["target_tokens"] / (m["iqr_ms"][0] / 1e3) - med for med, m in zip(medians, models)]
    ax.bar(list(tp["models"]), medians, yerr=[low, high], capsize=4, color=[f"C{i}" for i in range(len(models))])
    ax.set_ylabel("target tokens / s (median, IQR bars)")
    ax.set_title(f"training throughput: ours / peer {ratio_cell(r)}", fontsize=9)
    save_figure(fig, out / "training_throughput.png")

    fig, axes = plt.subplots(1, len(devs), figsize=(5 * len(devs), 4), squeeze=False)
    names = list(result["systems"])
    for ax, d in zip(axes[0], devs):
        means = [result["systems"][n][d]["bleu"]["mean"] for n in names]
        stds = [result["systems"][n][d]["bleu"]["std"] for n in names]
        ax.bar(names, means, yerr=stds, capsize=4, color=["C0" if n != "marian_peer" else "C1" for n in names])
        ax.set_title(f"{d} (mean ± seed std)")
        ax.set_ylabel(f"BLEU ({result['strategy']})")
        ax.tick_params(axis="x", rotation=20)
    save_figure(fig, out / "training_bleu.png")


def write_decoding_report(result: dict, out: Path) -> None:
    plt = pyplot()

    sets = result["eval_sets"]
    lines = [f"# Decoding study ({result['device_info']['label']})", "",
             f"Checkpoint: `{result['checkpoint']}`; "
             f"{', '.join(f'{d}: {n} sentences' for d, n in sets.items())}; batched by a 4,000-token budget "
             "(beam search: 4,000 / beam size); sampling scores the first sample (seed 0). The best deterministic "
             f"strategy is chosen on `select` (the selection split): **{result['best_strategy']}**.", "",
             "| strategy | " + " | ".join(f"{d} BLEU | {d} chrF++ | {d} ms/sent" for d in sets)
             + " | distinct-1 | distinct-2 |", "| --- |" + " ---: |" * (3 * len(sets) + 2)]
    for name, r in result["strategies"].items():
        cells = " | ".join(f"{r[d]['bleu']:.2f} | {r[d]['chrf']:.2f} | {r[d]['ms_per_sentence']:.1f}" for d in sets)
        div = r.get("diversity")
        lines.append(f"| {name} | {cells} | " + (f"{div['distinct1']:.3f} | {div['distinct2']:.3f} |" if div
                                                    else "– | – |"))
    lines += ["", "Beam 4 minus greedy (paired bootstrap over sentences, 95% interval):", "",
              "| set | BLEU diff [95% CI] | verdict | chrF++ diff [95% CI] | verdict |",
              "| --- | ---: | --- | ---: | --- |"]
    for d, c in result["beam4_vs_greedy"].items():
        b, f = c["bleu"], c["chrf"]
        lines.append(f"| {d} | {diff_cell(b)} | {b['verdict']} | {diff_cell(f)} | {f['verdict']} |")
    lines += side_lines(result["side_by_side"])
    (out / "decoding.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4), squeeze=False)
    for ax, d in zip(axes[0], sets):
        for name, r in result["strategies"].items():
            ax.scatter(r[d]["ms_per_sentence"], r[d]["bleu"], label=name)
            ax.annotate(name, (r[d]["ms_per_sentence"], r[d]["bleu"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("ms per sentence (batched)")
        ax.set_ylabel("BLEU")
        ax.set_title(d)
    save_figure(fig, out / "decoding_quality_vs_latency.png")


def write_speed_report(result: dict, out: Path) -> None:
    """decoding_speed.md and .png from a decoding_speed.json result."""
    model = result["model"]
    lines = [f"# Decoding speed ({result['device_info']['label']})", "",
             f"Reproduce: `{result['command']}` (model: {'; '.join(f'{k} {v}' for k, v in model.items())})",
             *side_lines(result["side_by_side"])]
    (out / "decoding_speed.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    speed_plot(result["side_by_side"], out)


def recipe_report(result: dict) -> list[str]:
    """recipe.md or ablations.md: every entry tried, the rule and what it chose."""
    head = [f"Greedy BLEU / chrF++ on the selection split ({result['select_size']} pairs carved from the training "
            f"data; the dev sets are never decoded here), {result['steps']} steps, seed {result['seed']}, preset "
            f"{result['preset']} ({result['device_info']['label']}). Rule: {result['rule']}.", ""]
    if "grid" in result:
        lines = ["# Recipe sweep: the same grid for ours (RoPE) and the Marian peer", "", *head,
                 "| recipe | fields | ours BLEU | ours chrF++ | peer BLEU | peer chrF++ | mean BLEU |",
                 "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r, row in result["grid"].items():
            ours, peer = row["rope"]["select"], row["marian_peer"]["select"]
            lines.append(f"| {r} | `{json.dumps(row['fields'])}` | {ours['bleu']:.2f} | {ours['chrf']:.2f} | "
                         f"{peer['bleu']:.2f} | {peer['chrf']:.2f} | {row['mean_select_bleu']:.2f} |")
        return lines + ["", f"Chosen: **{result['chosen']}**.", *curve_lines(result)]
    lines = [f"# Architecture ablations of ours under the recipe `{result['recipe']}`", "", *head,
             "| ablation | fields | parameters (x peer) | BLEU | chrF++ | BLEU vs baseline [95% CI] | verdict |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for a, e in result["ablations"].items():
        vs = e.get("vs_baseline")
        lines.append(f"| {a} | `{json.dumps(e['fields'])}` | {e['parameters']:,} ({e['parameters_vs_peer']:.3f}) | "
                     f"{e['select']['bleu']:.2f} | {e['select']['chrf']:.2f} | "
                     f"{diff_cell(vs) if vs else '–'} | {verdict_cell(vs) if vs else '–'} |")
    return lines + ["", f"Kept: {', '.join(f'**{a}**' for a in result['kept']) or 'none'}.", *curve_lines(result)]


def plot_recipe_curves(result: dict, path: Path) -> None:
    """Selection BLEU against training step, one line per trained run."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in trained_curves(result).items():
        ax.plot([p["step"] for p in curve], [p["bleu"] for p in curve], marker="o", ms=3, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("selection-split BLEU (greedy)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def speed_plot(side: dict, out: Path) -> None:
    """decoding_speed.png: sentences per second of every side-by-side candidate, median with IQR bars."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(side["timings"])
    med = [side["timings"][n]["sentences_per_s"] for n in names]
    n_sent = side["batch"]
    err = [[m - n_sent / (side["timings"][k]["iqr_ms"][1] / 1e3) for k, m in zip(names, med)],
           [n_sent / (side["timings"][k]["iqr_ms"][0] / 1e3) - m for k, m in zip(names, med)]]
    ax.bar(names, med, yerr=err, capsize=4, color=["grey" if n.startswith("hf") else "C0" for n in names])
    ax.set_ylabel("sentences per second (median, IQR)")
    ax.set_title("side-by-side decoding speed")
    ax.tick_params(axis="x", rotation=20)
    save_figure(fig, out / "decoding_speed.png")


def side_lines(side: dict) -> list[str]:
    """Markdown: the side-by-side ratios, timings and where the time goes."""
    lines = ["", f"Side by side (batch {side['batch']}, exactly {side['new_tokens']} new tokens per sentence, "
              f"{side['kv_cache_speedup']['repeats']} interleaved rounds of `torch.utils.benchmark`):", "",
              "| ratio | median | IQR | 95% CI of the median | verdict |", "| --- | ---: | --- | --- | --- |"]
    for key in ("kv_cache_speedup", "greedy_throughput_ratio_vs_hf_generate", "beam_throughput_ratio_vs_hf_generate"):
        r = side[key]
        lines.append(f"| {key} | {r['median']:.2f} | {r['iqr'][0]:.2f}–{r['iqr'][1]:.2f} | "
                     f"{r['ci95'][0]:.2f}–{r['ci95'][1]:.2f} | {r['verdict']} |")
    lines += ["", "| candidate | median ms | IQR ms | sentences/s |", "| --- | ---: | --- | ---: |"]
    for name, t in side["timings"].items():
        lines.append(f"| {name} | {t['median_ms']:.0f} | {t['iqr_ms'][0]:.0f}–{t['iqr_ms'][1]:.0f} | "
                     f"{t['sentences_per_s']:.1f} |")
    lines += op_family_lines(side["time_by_op_family"])
    lines += ["", "Ceiling against `generate()` (HF's median time over our matmul + attention time, the part no "
              "cut in overhead removes): " + ", ".join(f"{k} {v:.2f}x" for k, v in
                                                      side["ceiling_vs_hf_generate"].items()) + "."]
    return lines


def trained_curves(result: dict) -> dict[str, list[dict]]:
    """Label -> selection curve of every run the stage trained (an averaging recipe's runs are its base's)."""
    if "grid" in result:
        return {f"{r} ({s})": row[s]["curve"] for r, row in result["grid"].items() for s in RECIPE_SYSTEMS
                if recipe_fields(r)[1] == 1}
    return {a: e["curve"] for a, e in result["ablations"].items()}


def curve_lines(result: dict) -> list[str]:
    """The selection BLEU of every trained run at each checkpoint (a table; the plot is ``*_curves.png``)."""
    curves = trained_curves(result)
    steps = sorted({p["step"] for c in curves.values() for p in c})
    lines = ["", "Selection BLEU at each checkpoint (is the run still improving when the budget ends?):", "",
             "| run | " + " | ".join(f"step {s}" for s in steps) + " |", "| --- |" + " ---: |" * len(steps)]
    for label, curve in curves.items():
        at = {p["step"]: p["bleu"] for p in curve}
        lines.append(f"| {label} | " + " | ".join(f"{at[s]:.2f}" if s in at else "–" for s in steps) + " |")
    return lines


DEPLOY_ROWS = {  # deploy.json's engines: (what runs, which model, precision)
    "ours": ("our decoder (PyTorch)", "ours", "fp32"),
    "ours_int8_dynamic": ("our decoder, `quantize_dynamic` linears", "ours", "int8 (linears)"),
    "peer_torch": ("HF `MarianMTModel` (PyTorch)", "Marian peer", "fp32"),
    "ct2_ours_float32": ("CTranslate2", "ours", "fp32"),
    "ct2_ours_int8": ("CTranslate2", "ours", "int8"),
    "ct2_peer_float32": ("CTranslate2", "Marian peer", "fp32"),
    "ct2_peer_int8": ("CTranslate2", "Marian peer", "int8"),
}


def write_deploy_report(result: dict, out: Path) -> None:
    """deploy.md and deploy.png from a deploy.json result (``bench_deploy.py``)."""
    devs, speed = list(result["dev_sets"]), result["speed"]
    lines = [f"# Deployment: CTranslate2 beside our decoder and HF `generate()` ({result['device_info']['label']}; "
             f"CTranslate2 with {result['device_info']['ctranslate2_threads']} threads)", "",
             f"Reproduce: `{result['command']}` (checkpoints: ours {result['checkpoints']['ours']}, peer "
             f"{result['checkpoints']['peer']}).", "",
             "Proof before timing: greedy outputs of each fp32 export against its PyTorch model on "
             f"{devs[0]} ({result['proof']['ours']['sentences']} sentences):", "",
             "| model | token-identical | BLEU PyTorch | BLEU CTranslate2 | diff |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, p in result["proof"].items():
        lines.append(f"| {name} | {p['identical_share']:.2%} | {p['bleu_torch']:.2f} | {p['bleu_ctranslate2']:.2f} | "
                     f"{p['bleu_diff']:+.2f} |")
    lines += ["", "Quality, greedy (" + ", ".join(f"{d}: {n} sentences" for d, n in result["dev_sets"].items()) + "):",
              "",
              "| engine | model | precision | " + " | ".join(f"{d} BLEU | {d} chrF++" for d in devs) + " |",
              "| --- | --- | --- |" + " ---: |" * (2 * len(devs))]
    for name, s in result["quality"].items():
        engine, model, precision = DEPLOY_ROWS[name]
        lines.append(f"| {engine} | {model} | {precision} | "
                     + " | ".join(f"{s[d]['bleu']:.2f} | {s[d]['chrf']:.2f}" for d in devs) + " |")
    lines += ["", f"int8 against fp32 (one checkpoint decoded two ways; {VERDICT_RULE}):", "",
              "| change | dev set | BLEU diff [95% CI] | verdict | chrF++ diff [95% CI] | verdict |",
              "| --- | --- | ---: | --- | ---: | --- |"]
    for key, per_set in result["int8_changes"].items():
        for d, c in per_set.items():
            lines.append(f"| {key} | {d} | {diff_cell(c['bleu'])} | {verdict_cell(c['bleu'])} | {diff_cell(c['chrf'])} "
                         f"| {verdict_cell(c['chrf'])} |")
    lines += ["", f"Speed: batch {speed['batch']}, exactly {speed['new_tokens']} new tokens per sentence, "
              f"{len(next(iter(speed['timings'].values()))['samples_ms'])} interleaved rounds; batch 1: "
              f"{result['latency']['sentences']} real sentences one at a time, greedy, natural length.", "",
              "| ratio | median | IQR | 95% CI of the median | verdict |", "| --- | ---: | --- | --- | --- |"]
    for key, r in result["ratios"].items():
        lines.append(f"| {key} | {r['median']:.2f} | {r['iqr'][0]:.2f}–{r['iqr'][1]:.2f} | "
                     f"{r['ci95'][0]:.2f}–{r['ci95'][1]:.2f} | {r['verdict']} |")
    lines += ["", "| candidate | median ms | IQR ms | ms per sentence |", "| --- | ---: | --- | ---: |"]
    for table in (speed["timings"], result["latency"]["timings"]):
        for name, t in table.items():
            label = name if table is speed["timings"] else f"{name} (batch 1)"
            lines.append(f"| {label} | {t['median_ms']:.0f} | {t['iqr_ms'][0]:.0f}–{t['iqr_ms'][1]:.0f} | "
                         f"{t['ms_per_sentence']:.1f} |")
    profile = result["ours_profile_greedy"]
    ct2_ms = speed["timings"]["ct2_ours_float32_greedy"]["median_ms"]
    lines += ["", "Where our greedy time goes (`torch.profiler`, batch 32, forced length), beside CTranslate2's whole "
              f"time on the same model ({ct2_ms:.0f} ms; it exposes no profile to Python):",
              *op_family_lines({"ours_greedy": profile}),
              "", f"Our matmuls alone take {profile['matmul']['ms']:.0f} ms, "
              f"{profile['matmul']['ms'] / ct2_ms:.2f}x CTranslate2's whole greedy decode."]
    (out / "deploy.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    deploy_plot(result, out / "deploy.png")


def deploy_plot(result: dict, path: Path) -> None:
    """Sentences per second at batch 32 (greedy and beam) against dev BLEU, one point per engine and precision."""
    plt = pyplot()
    speed, first = result["speed"], next(iter(result["dev_sets"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, mode in zip(axes, ("greedy", f"beam{speed['beam']}")):
        for name, s in result["quality"].items():
            key = "hf_generate" if name == "peer_torch" else name
            t = speed["timings"].get(f"{key}_{mode}")
            if t is None:
                continue
            ax.scatter(speed["batch"] / (t["median_ms"] / 1e3), s[first]["bleu"], s=40)
            ax.annotate(name, (speed["batch"] / (t["median_ms"] / 1e3), s[first]["bleu"]), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel(f"sentences per second, {mode} (batch {speed['batch']}, log)")
        ax.set_title(mode)
    axes[0].set_ylabel(f"{first} BLEU (greedy)")
    save_figure(fig, path)
