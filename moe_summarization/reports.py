"""The MoE studies' reports, from their JSON alone (so ``rederive_verdicts.py`` can render them again without
training or scoring anything): ``summarization.md`` and its plots (``bench_summarization.py``), ``moe_layer.md``
and its plots (``bench_moe.py``)."""

from __future__ import annotations

from pathlib import Path

import torch

from shared_utils.report import VERDICT_RULE, pyplot, save_figure, verdict_cell

CELL_METRICS = ("rouge1", "rouge2", "rougeL", "bertscore_f1")


def _budget_line(result: dict) -> str:
    b = result["budget"]
    seconds = [r["step_seconds"] for r in result["runs"].values()]
    minutes = f"{min(seconds) / 60:.0f}-{max(seconds) / 60:.0f} min of optimizer steps per run" if seconds else ""
    return (f"Budget: {b['steps']} steps of ~{b['batch_tokens']} tokens per model ({minutes}), size `{b['size']}` "
            f"(d_model {b['d_model']}, {b['layers']} layers, vocabulary {b['vocab_size']}; our dense model "
            f"{b['dense_parameters']:,} parameters, the peers' FFN widths "
            f"{', '.join(f'{m} {w}' for m, w in b['peer_ffn'].items())} to match it), documents truncated to "
            f"{b['max_source_len']} tokens, {'pointer-generator (copy) output for ours' if b['copy'] else 'no copy'}, "
            f"{'lowercased' if b['lowercase'] else 'cased'} vocabulary, {b['schedule']} learning-rate schedule (peak "
            f"{b['lr']}), MoE capacity factor {b['capacity_factor'] or 'none (dropless)'}; beam 4, no-repeat-3-gram; "
            f"{', '.join(f'{s}: {n} documents' for s, n in result['documents'].items())}. BERTScore model: "
            f"`{result['bertscore_model']}`. Means over seeds (± the std, where several).")


def write_summarization_report(result: dict, out: Path) -> None:
    sets = result["eval_sets"]
    lines = [f"# Summarization benchmark ({result['device']}, {result['machine']})", "", _budget_line(result), ""]
    if result.get("pending"):
        lines += [f"**Sweep in progress**: {len(result['runs'])} runs finished, {len(result['pending'])} still to come "
                  f"({', '.join(result['pending'])}). The tables cover the finished runs only.", ""]
    if result.get("transfer_note"):
        lines += [result["transfer_note"], ""]
    lines += ["| model | seeds | " + " | ".join(f"{s} R-1 | R-2 | R-L | BERTScore" for s in sets) + " |",
              "| --- | ---: |" + " ---: |" * (4 * len(sets))]
    for name, r in result["models"].items():
        cells = []
        for s in sets:
            m = r[s]
            std = r.get("std", {}).get(s, {}).get("rougeL")
            rl = f"{m['rougeL']:.2f}" + (f" ± {std:.2f}" if std is not None else "")
            cells.append(f"{m['rouge1']:.2f} | {m['rouge2']:.2f} | {rl} | {m['bertscore_f1']:.2f}")
        seeds = len(r.get("runs", {})) or "-"
        label = f"**{name}** (best of ours on the selection split)" if name == result.get("best_of_ours") else name
        lines.append(f"| {label} | {seeds} | " + " | ".join(cells) + " |")
    for name, r in result.get("baselines", {}).items():
        if "not_run" in r:
            lines.append(f"| {name} (pretrained) | - | not run: {r['not_run']} |")
        else:
            lines.append(f"| {name} (pretrained: {r['model']}) | - | " + " | ".join(
                f"{r[s]['rouge1']:.2f} | {r[s]['rouge2']:.2f} | {r[s]['rougeL']:.2f} | {r[s]['bertscore_f1']:.2f}"
                for s in sets if s in r) + " |")
    lines += ["", "Runs (chosen: the checkpoint the selection split chose; step minutes: optimizer steps alone; wall "
              "minutes: the whole run, training, validation and scoring, on one CPU core, how each was measured in "
              "`wall_measured`):", "",
              "| run | parameters | steps | chosen step | selection R-L | step minutes | wall minutes |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in result["runs"].items():
        wall = "–" if r.get("wall_minutes") is None else f"{r['wall_minutes']:.1f}"
        resumed = " (last sitting)" if "resumed" in (r.get("wall_measured") or "") else ""
        lines.append(f"| {name} | {r['parameters']:,} | {r['steps']} | {r['chosen_step']} | {r['select_rougeL']:.2f} "
                     f"| {r['step_seconds'] / 60:.1f} | {wall}{resumed} |")
    lines += ["", f"Comparisons (difference of the seed means; {VERDICT_RULE}):", "",
              "| comparison | set | metric | per seed (A; B) | A - B | 95% CI | verdict |",
              "| --- | --- | --- | --- | ---: | ---: | --- |"]
    for name, by_set in result.get("comparisons", {}).items():
        for s, by_metric in by_set.items():
            for metric, c in by_metric.items():
                a, b = c["per_seed"]
                lines.append(f"| {name} | {s} | {metric} | "
                             f"{', '.join(f'{x:.2f}' for x in c['per_seed'][a])}; "
                             f"{', '.join(f'{x:.2f}' for x in c['per_seed'][b])} | {c['mean']['diff']:+.2f} | "
                             f"[{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] | **{verdict_cell(c)}** |")
    examples = result.get("examples", {})
    if examples.get("rows"):
        lines += ["", f"## {len(examples['rows'])} {sets[-1]} documents and every model's summary", "",
                  f"Documents {', '.join(str(i) for i in examples['indices'])} of the set (drawn with seed "
                  f"{examples['seed']} before any output existed); each model's lowest-seed run.", ""]
        for i, row in zip(examples["indices"], examples["rows"]):
            doc = " ".join(row["document"].split())
            lines += [f"**Document {i}** ({len(doc.split())} words): {doc[:300]}{'...' if len(doc) > 300 else ''}",
                      "", f"- reference: {row['reference']}"]
            lines += [f"- {model}: {text}" for model, text in row["summaries"].items()]
            lines.append("")
    (out / "summarization.md").write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    plot_summarization(result, out)


def plot_summarization(result: dict, out: Path) -> None:
    plt = pyplot()
    sets = result["eval_sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4), squeeze=False)
    names = list(result["models"])
    for ax, s in zip(axes[0], sets):
        for j, metric in enumerate(CELL_METRICS):
            ax.bar([i + 0.2 * j for i in range(len(names))], [result["models"][n][s][metric] for n in names],
                   width=0.2, label=metric)
        ax.set_xticks([i + 0.3 for i in range(len(names))], names, rotation=30)
        ax.set_title(s)
    axes[0][0].legend(fontsize=8)
    save_figure(fig, out / "summarization_scores.png")

    fig, (ax_loss, ax_rouge) = plt.subplots(1, 2, figsize=(11, 4))
    for name, points in result.get("curves", {}).items():
        steps = [p["step"] for p in points]
        ax_loss.plot(steps, [p.get("select/loss") for p in points], marker=".", label=name)
        ax_rouge.plot(steps, [p.get("select/rougeL") for p in points], marker=".", label=name)
    ax_loss.set(xlabel="step", ylabel="selection-split loss", title="learning curves (lowest seed)")
    ax_rouge.set(xlabel="step", ylabel="selection-split ROUGE-L (greedy)")
    ax_rouge.legend(fontsize=7)
    save_figure(fig, out / "summarization_curves.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, load in result.get("expert_load", {}).items():
        for layer in range(len(load[0]["max_over_mean"]) if load else 0):
            ax.plot([r["step"] for r in load], [r["max_over_mean"][layer] for r in load], lw=0.8,
                    label=f"{name} layer {layer}")
    ax.set_xlabel("step")
    ax.set_ylabel("max / mean expert load")
    ax.legend(fontsize=7)
    save_figure(fig, out / "summarization_expert_load.png")

    sources = sorted({s for r in result.get("per_source", {}).values() for s in r})
    if sources:
        fig, ax = plt.subplots(figsize=(7, 4))
        for j, (name, r) in enumerate(result["per_source"].items()):
            ax.bar([i + 0.12 * j for i in range(len(sources))], [r.get(s, 0.0) for s in sources], width=0.12,
                   label=name)
        ax.set_xticks([i + 0.3 for i in range(len(sources))], sources)
        ax.set_ylabel(f"ROUGE-L ({sets[0]})")
        ax.legend(fontsize=7)
        save_figure(fig, out / "summarization_per_source.png")


def write_layer_report(result: dict, path: Path) -> None:
    s, b = result["speed"], result["balance"]
    shape = s["shape"]
    lines = [
        f"# MoE layer benchmark ({result['device']['label']})",
        "",
        f"Reproduce: `{result['command']}`",
        "",
        f"## Speed: forward+backward, {shape['tokens']} tokens (batch {shape['batch']} x seq {shape['seq']}), "
        f"d_model {shape['d_model']}, d_ff {shape['d_ff']}, {shape['experts']} experts",
        "",
        f"`torch.utils.benchmark`, every layer once per round in a shuffled order, "
        f"{next(iter(s['fwd_bwd_ms'].values()))['repeats']} rounds; ms median [IQR].",
        "",
        "| layer | ms, median [IQR] |",
        "| --- | ---: |",
        *[f"| {name} | {t['median_ms']:.1f} [{t['iqr_ms'][0]:.1f}, {t['iqr_ms'][1]:.1f}] |"
          for name, t in s["fwd_bwd_ms"].items()],
        "",
        f"| ratio (ours / theirs), median [95% CI], verdict | {' | '.join(s['ratios_by_dispatch'])} |",
        "| --- |" + " ---: |" * len(s["ratios_by_dispatch"]),
        *[f"| {k} | " + " | ".join(f"{r[k]['median']:.2f} [{r[k]['ci95'][0]:.2f}, {r[k]['ci95'][1]:.2f}] "
                                   f"{r[k]['verdict']}" for r in s["ratios_by_dispatch"].values()) + " |"
          for k in next(iter(s["ratios_by_dispatch"].values()))],
        "",
        f"Headline ratios use the default dispatch, `{s['dispatch']}`. Verdict: `lower` (faster) or `higher` "
        "only when the 95% bootstrap interval of the median per-round ratio is on that side of 1.0, else "
        "`tie`. HF Mixtral's fastest "
        f"experts implementation here: `{s['hf_mixtral_fastest_experts']}`.",
        "",
        *expert_parallel_lines(result.get("expert_parallel")),
        f"## Balance: tiny MoE LM, {result['experiment']['steps']} steps, top-{result['experiment']['moe']['k']}, "
        f"capacity factor {result['experiment']['moe']['capacity_factor']}, "
        f"{result['experiment']['moe']['num_experts']} experts",
        "",
        "Load over the last 10% of steps, for the worst MoE layer: max/mean and CV of the tokens each expert "
        "received in that window, and the same per single step (which adds one batch's sampling noise).",
        "",
        "| balancer | max/mean load | CV | max/mean per step | CV per step | dropped fraction | final LM loss |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *[f"| {n} | {v['max_over_mean_load']:.2f} | {v['cv']:.2f} | {v['max_over_mean_load_per_step']:.2f} | "
          f"{v['cv_per_step']:.2f} | {v['dropped_fraction']:.3f} | {v['final_lm_loss']:.3f} |" for n, v in b.items()],
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def plot_layer(result: dict, histories: dict, out: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(2, len(histories), figsize=(4 * len(histories), 6.5), sharex=True)
    for col, (name, history) in enumerate(histories.items()):
        layer = max(history["layers"], key=lambda steps: sum(s["max_over_mean"] for s in steps[-10:]))
        loads = torch.tensor([s["tokens_per_expert"] for s in layer], dtype=torch.float)  # (steps, E)
        frac = (loads / loads.sum(1, keepdim=True)).numpy()
        axes[0, col].stackplot(range(len(frac)), frac.T)
        axes[0, col].set_title(f"{name}: share of tokens per expert")
        axes[0, col].set_ylim(0, 1)
        axes[1, col].plot([s["max_over_mean"] for s in layer], lw=0.8)
        axes[1, col].axhline(1.25, color="grey", ls="--", lw=0.8)
        axes[1, col].set_ylim(1.0, len(layer[0]["tokens_per_expert"]) + 0.2)  # 8 = all tokens on one expert
        axes[1, col].set_title("max/mean load per step (worst layer)")
        axes[1, col].set_xlabel("step")
    save_figure(fig, out / "expert_load.png")

    timings = result["speed"]["fwd_bwd_ms"]
    med = [t["median_ms"] for t in timings.values()]
    err = [[m - t["iqr_ms"][0] for m, t in zip(med, timings.values())],
           [t["iqr_ms"][1] - m for m, t in zip(med, timings.values())]]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.barh(list(timings), med, xerr=err, capsize=2,
            color=["grey" if n.startswith(("dense", "hf")) else "C0" for n in timings])
    ax.set_xlabel("forward+backward ms (median, IQR bars)")
    ax.invert_yaxis()
    save_figure(fig, out / "moe_speed.png")


def expert_parallel_lines(ep: dict | None) -> list[str]:
    if not ep:
        return []
    if "not_run" in ep:
        return [f"Expert parallelism: not run ({ep['not_run']}).", ""]
    t, c = ep["ms_fwd_bwd"], ep["ms_all_to_all"]
    return [f"## Expert parallelism: the same top-1 layer, experts sharded over {ep['world_size']} processes "
            f"({ep['backend']}), {ep['tokens_per_rank']} tokens per rank", "",
            "| forward+backward ms, median [IQR] | all-to-all ms, median [IQR] | all-to-all share | "
            "bytes sent per token (forward; x2 with backward) |",
            "| ---: | ---: | ---: | ---: |",
            f"| {t['median_ms']:.1f} [{t['iqr_ms'][0]:.1f}, {t['iqr_ms'][1]:.1f}] | {c['median_ms']:.1f} "
            f"[{c['iqr_ms'][0]:.1f}, {c['iqr_ms'][1]:.1f}] | {ep['all_to_all_share']:.2f} | "
            f"{ep['bytes_per_token']:.0f} |", ""]
