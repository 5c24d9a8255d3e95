"""Study: ToP's dev score against its MACs budget over seeds, beside static top-k and truncation at the MACs each
run reached (`python -m studies.budget_curve [--settings NAME ...] [--targets T ...] [--seeds S ...]`).

Each run is the prune stage itself (search, fine-tuning, selection, ranking agreement) at the prune params with
one setting's overrides, a target and a seed (a target the search alone cannot reach with the default prune
layers prunes from layer 1), from artifacts/teacher on data/prepared; the baselines are tuned to the MACs that run
reached. Per setting and target the record gives the mean and standard deviation over seeds of the dev score, the
reached MACs (on dev, and on the training rows' lengths that the default budget is met on) and where the search alone
ended, the gap to the teacher, the baselines and the distilled layer's ranking agreement.
Each other setting is also compared with the default seed by seed (paired), where seed-to-seed spread cancels.
Finished runs stay in the record, so a killed study resumes with the runs it still lacks. Writes
artifacts/metrics/experiments/budget-curve-<task>.json and a plot beside it.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig

from pipeline import CHECKPOINT_ROOT, PREPARED_DIR, TEACHER_DIR, run_stage
from pipeline.baselines import compare_with_baselines
from pipeline.prune import prune_teacher
from studies.experiment_file import resumable_study, study_parser, write_experiment
from top.backbone import load_tokenizer
from top.cpu import cpu_model_and_flags
from top.data.prepare import load_prepared
from top.figures import pyplot, save_figure
from top.params import Params, PruneParams
from top.pruning.train import macs_floor, split_macs_ratio

SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "no-distillation": {"rank_loss_weight": 0.0},
    "gates-learned": {"gates": "learned"},
    "budget-on-eval-lengths": {"budget_lengths": "eval"},
}
TARGETS = (0.5, 0.3)
SEEDS = (42, 43, 44)
# The scores each run contributes to its setting's mean and std.
SCORES = (
    "top",
    "static_topk",
    "truncation",
    "macs_ratio",
    "train_macs_ratio",
    "search_end_macs_ratio",
    "delta_points",
    "distilled_layer_tau",
)
# The scores compared seed by seed between the default and another setting.
EFFECTS = ("top", "macs_ratio", "distilled_layer_tau")


def budget_run(
    prune: PruneParams, overrides: dict[str, Any], target: float, seed: int, prepared_dir: Path, teacher_dir: Path
) -> dict[str, Any]:
    """One prune-stage run and the baselines at the MACs it reached."""
    params = prune.model_copy(update={**overrides, "target_macs": target, "seed": seed})
    params = params.model_copy(update={"prune_layers": reachable_prune_layers(params, prepared_dir, teacher_dir)})
    with tempfile.TemporaryDirectory() as work:
        metrics = prune_teacher(
            prepared_dir, teacher_dir, params, Path(work) / "pruned", Path(work) / "live", CHECKPOINT_ROOT
        )
    compared = compare_with_baselines(prepared_dir, teacher_dir, metrics, params)
    # The first distilled layer ranks the tokens of the prune layer after it.
    distilled = f"layer_{params.distill_layers[0] + 1}"
    return {
        "setting": overrides,
        "target": target,
        "seed": seed,
        "prune_layers": list(params.prune_layers),
        "cpu": cpu_model_and_flags()[0],  # a resumed study's runs may span machines; the record's machine is the last
        "top": compared["top"],
        "teacher": compared["teacher"],
        "static_topk": compared["static_topk"],
        "truncation": compared["truncation"],
        "macs_ratio": metrics["macs_ratio_real_lengths"],
        "search_end_macs_ratio": metrics["search_end_macs_ratio"],
        "delta_points": metrics["delta_points"],
        "keep_ratios": metrics["keep_ratios"],
        "distilled_layer_tau": metrics["ranking_agreement"]["pruned"][distilled]["kendall_tau"],
        "train_seconds": metrics["train_seconds"],
    }


def split_to_cost(split: str, prepared_dir: Path, teacher_dir: Path) -> tuple[Any, Any, Any]:
    """A split (train or eval), the tokenizer and the model config: what MACs are counted on."""
    _, splits, _ = load_prepared(prepared_dir)
    return splits[split], load_tokenizer(str(teacher_dir)), AutoConfig.from_pretrained(teacher_dir)


def reachable_prune_layers(prune: PruneParams, prepared_dir: Path, teacher_dir: Path) -> list[int]:
    """The prune layers of ``prune``, or every layer from 1 where the search alone could not get down to the
    target with them (``macs_floor`` without fine-tuning, on the lengths its budget is counted on): a cheaper
    model then has to prune earlier."""
    split, tokenizer, config = split_to_cost(prune.budget_lengths, prepared_dir, teacher_dir)
    if prune.target_macs + prune.macs_tolerance >= macs_floor(
        split, tokenizer, prune.model_copy(update={"finetune_epochs": 0.0}), config
    ):
        return list(prune.prune_layers)
    return list(range(1, config.num_hidden_layers))


def cost_on_training_rows(
    runs: dict[str, dict[str, Any]], prune: PruneParams, prepared_dir: Path, teacher_dir: Path
) -> None:
    """Give each run its final keep ratios' MACs ratio on the training rows (``train_macs_ratio``), the lengths its
    budget is met on by default, beside its ``macs_ratio`` on dev: the two differ where the splits' lengths do."""
    split, tokenizer, config = split_to_cost("train", prepared_dir, teacher_dir)
    for run in runs.values():
        # A run recorded without its prune layers pruned the params' own.
        layers = prune.model_copy(update={"prune_layers": run.get("prune_layers", prune.prune_layers)})
        ratio = split_macs_ratio(split, tokenizer, layers, config, list(run["keep_ratios"].values()))
        run["train_macs_ratio"] = round(ratio, 4)


def spread(values: list[float]) -> dict[str, float]:
    """Mean and sample std (std 0 for a single value), rounded for the record."""
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
    }


def summarize(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and sample std over seeds per "setting @ target"."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for key, run in runs.items():
        groups.setdefault(key.rsplit(" / seed ", 1)[0], []).append(run)
    summary = {}
    for group in sorted(groups, key=_group_order):
        members = groups[group]
        cell: dict[str, Any] = {"seeds": sorted(run["seed"] for run in members)}
        layers = {tuple(run["prune_layers"]) for run in members if "prune_layers" in run}
        if len(layers) == 1:
            cell["prune_layers"] = list(layers.pop())
        for score in SCORES:
            values = [run[score] for run in members if run.get(score) is not None]
            if values:
                cell[score] = spread(values)
        summary[group] = cell
    return summary


def _group_order(group: str) -> tuple[int, float]:
    """Settings in SETTINGS order (unknown ones last), each from the largest target down."""
    setting, target = group.split(" @ ")
    return (list(SETTINGS).index(setting) if setting in SETTINGS else len(SETTINGS), -float(target))


def paired_effects(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per other setting and target, the default minus that setting at the same seeds: pairing by seed cancels
    what the seed's draws (masks, data order) do to both runs, so the effect of the setting's change stands out."""
    pairs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for key, run in runs.items():
        group, seed = key.rsplit(" / seed ", 1)
        setting, target = group.split(" @ ")
        default = runs.get(f"default @ {target} / seed {seed}")
        if setting != "default" and default is not None:
            pairs.setdefault(f"default - {setting} @ {target}", []).append((default, run))
    return {
        name: {
            "seeds": sorted(run["seed"] for _, run in members),
            **{score: spread([default[score] - run[score] for default, run in members]) for score in EFFECTS},
        }
        for name, members in pairs.items()
    }


def plot(task: str, metric: str, teacher: float, summary: dict[str, dict[str, Any]], path: Path) -> None:
    """Dev score against reached MACs (mean ± std over seeds), per setting and per baseline, with the teacher."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[tuple[float, float, float]]] = {}
    for group, cell in summary.items():
        setting = group.split(" @ ")[0]
        macs = cell["macs_ratio"]["mean"]
        series.setdefault(f"ToP {setting}", []).append((macs, cell["top"]["mean"], cell["top"]["std"]))
        # Baselines at the default's MACs only: the other settings reach the same MACs, so theirs would overlap.
        for baseline in ("static_topk", "truncation") if setting == "default" else ():
            if baseline in cell:
                point = (macs, cell[baseline]["mean"], cell[baseline]["std"])
                series.setdefault(f"{baseline.replace('_', ' ')} (at the default's MACs)", []).append(point)
    for label, points in series.items():
        points.sort()
        style = "o-" if label.startswith("ToP") else "s:"
        axes.errorbar(*zip(*points, strict=True), fmt=style, capsize=3, label=label)
    axes.axhline(teacher, color="grey", ls="--", lw=0.8, label="teacher")
    axes.set(xlabel="MACs ratio (real lengths)", ylabel=f"dev {metric}", title=f"ToP budget curve, {task}, mean ± std")
    axes.legend(fontsize=7)
    save_figure(figure, path)


def study(
    params: Params,
    settings: list[str],
    targets: list[float],
    seeds: list[int],
    prepared_dir: str | Path = PREPARED_DIR,
    teacher_dir: str | Path = TEACHER_DIR,
) -> Path:
    """Run what the record lacks, rewriting the record and the plot after each run and at the end."""
    spec, name, runs = resumable_study("budget-curve", prepared_dir, teacher_dir)
    train_rows = load_prepared(prepared_dir)[2]["splits"]["train"]
    teacher_dir = Path(teacher_dir)
    for setting in settings:
        for target in targets:
            for seed in seeds:
                key = f"{setting} @ {target} / seed {seed}"
                if key in runs and runs[key]["setting"] == SETTINGS[setting]:
                    continue
                runs[key] = budget_run(params.prune, SETTINGS[setting], target, seed, Path(prepared_dir), teacher_dir)
                cost_on_training_rows({key: runs[key]}, params.prune, Path(prepared_dir), teacher_dir)
                write_record(name, spec.name, spec.primary_metric, train_rows, params, runs)
    # Rewritten once more, so that a rerun of a finished study brings its summary up to date.
    cost_on_training_rows(runs, params.prune, Path(prepared_dir), teacher_dir)
    return write_record(name, spec.name, spec.primary_metric, train_rows, params, runs)


def write_record(
    name: str, task: str, metric: str, train_rows: int, params: Params, runs: dict[str, dict[str, Any]]
) -> Path:
    """The record (runs, their summary and the paired effects) and its plot, rewritten whole."""
    summary = summarize(runs)
    path = write_experiment(
        name,
        __doc__,
        torch.get_num_threads(),
        {
            "task": task,
            "metric": metric,
            # A subsample (data.max_train_samples) shows here: the teacher and every run trained on these rows.
            "train_rows": train_rows,
            "epochs": params.prune.epochs,
            "finetune_epochs": params.prune.finetune_epochs,
            "prune_layers": list(params.prune.prune_layers),
            "summary": summary,
            "effects": paired_effects(runs),
            "runs": runs,
        },
    )
    plot(task, metric, next(iter(runs.values()))["teacher"], summary, path.with_suffix(".png"))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = study_parser(__doc__, SETTINGS, TARGETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    args = parser.parse_args(argv)
    run_stage(
        "budget_curve",
        lambda params: study(params, args.settings, args.targets, args.seeds, args.prepared_dir, args.teacher_dir),
    )


if __name__ == "__main__":
    main()
