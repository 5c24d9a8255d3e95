"""Study: where the ToP search alone ends against its MACs target, per setting of the masks' and the multipliers'
learning rates and the warm-up (`python -m studies.constraint_landing [--targets T ...] [--settings NAME ...]`);
which setting the prune defaults take.

Each run is the prune stage's search at the prune params, without the fine-tuning phase (`finetune_epochs` 0),
from artifacts/teacher on data/prepared, with one setting's overrides. Every evaluation's deterministic MACs ratio
and dev score are kept, so the record shows how the search approaches the target, where it ends and whether that
is within `prune.macs_tolerance` of it. Finished runs stay in the record, so a killed study resumes with the runs
it still lacks. Writes artifacts/metrics/experiments/constraint-landing-<task>.json and a plot of the MACs ratios
beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline import CHECKPOINT_ROOT, PREPARED_DIR, TEACHER_DIR, run_stage
from studies.experiment_file import EXPERIMENTS_DIR, resumable_study, study_parser, write_experiment
from top.backbone import load_tokenizer
from top.data.prepare import load_prepared
from top.figures import pyplot, save_figure
from top.fingerprint import directory_digest
from top.params import Params, PruneParams
from top.pruning.teacher_cache import TeacherOutputStore
from top.pruning.train import load_models, search_end, train_token_pruning

# The authors' form: Adam ascent on the multipliers, no fixed pull; the masks' and the multipliers' rate 0.02.
AUTHORS = {
    "mask_learning_rate": 0.02,
    "multiplier_update": "adam",
    "multiplier_learning_rate": 0.02,
    "constraint_penalty": 0.0,
}
# The augmented Lagrangian: a fixed pull proportional to the gap, and a multiplier stepped by the gap.
DAMPED = {
    "mask_learning_rate": 0.1,
    "multiplier_update": "error_scaled",
    "multiplier_learning_rate": 5.0,
    "constraint_penalty": 2000.0,
}
SETTINGS: dict[str, dict[str, Any]] = {
    "authors": AUTHORS,
    "authors-masks-0.1": {**AUTHORS, "mask_learning_rate": 0.1},
    "authors-masks-0.1-multipliers-0.5": {**AUTHORS, "mask_learning_rate": 0.1, "multiplier_learning_rate": 0.5},
    "authors-masks-0.1-multipliers-0.5-warmup-0.25": {
        **AUTHORS,
        "mask_learning_rate": 0.1,
        "multiplier_learning_rate": 0.5,
        "warmup_ratio": 0.25,
    },
    "damped": DAMPED,
    "damped-warmup-0.25": {**DAMPED, "warmup_ratio": 0.25},
    # Pruning from layer 1 lowers the MACs floor: with the default prune layers MRPC cannot go under 0.24.
    "damped-from-layer-1": {**DAMPED, "prune_layers": [1, 2, 3, 4, 5]},
}
TARGETS = (0.3,)
# Every checkpoint is eligible, so a search that never gets under the budget still returns its trajectory.
ANY_MACS = 1.0


def search_run(
    prune: PruneParams, overrides: dict[str, Any], target: float, prepared_dir: Path, teacher_dir: Path
) -> dict[str, Any]:
    """One search without fine-tuning; its trajectory and where it ends."""
    params = prune.model_copy(
        update={**overrides, "target_macs": target, "finetune_epochs": 0.0, "macs_tolerance": ANY_MACS}
    )
    spec, splits, meta = load_prepared(prepared_dir)
    tokenizer = load_tokenizer(str(teacher_dir))
    teacher, student = load_models(teacher_dir, params)
    store = TeacherOutputStore(Path(CHECKPOINT_ROOT), directory_digest(teacher_dir))
    _, _, summary = train_token_pruning(
        teacher, student, spec, splits, tokenizer, params, meta["max_length"], teacher_store=store
    )
    history = [record for record in summary["history"] if record["phase"] == "search"]
    end = search_end(history)
    return {
        "target": target,
        "overrides": overrides,
        "end_macs_ratio": round(end["macs_ratio"], 4),
        "end_dev_score": round(end["dev_score"], 4),
        "landed": abs(end["macs_ratio"] - target) <= prune.macs_tolerance,
        "steps": summary["steps"],
        "trajectory": [
            {name: round(record[name], 4) for name in ("step", "target", "macs_ratio", "dev_score")}
            for record in history
        ],
    }


def plot(task: str, runs: dict[str, dict[str, Any]], path: Path) -> None:
    """MACs ratio of the deterministic masks against step, one line per run, with each target's schedule dashed."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, run in runs.items():
        steps = [point["step"] for point in run["trajectory"]]
        line = axes.plot(steps, [point["macs_ratio"] for point in run["trajectory"]], marker="o", label=name)
        axes.plot(steps, [point["target"] for point in run["trajectory"]], "--", color=line[0].get_color(), lw=0.8)
    axes.set(xlabel="search step", ylabel="MACs ratio (deterministic masks)", title=f"ToP search alone, {task}")
    axes.legend(fontsize=7)
    save_figure(figure, path)


def study(
    params: Params,
    settings: list[str],
    targets: list[float],
    prepared_dir: str | Path = PREPARED_DIR,
    teacher_dir: str | Path = TEACHER_DIR,
) -> Path:
    """Run each setting at each target that the record lacks, rewriting the record and the plot after each run."""
    spec, name, runs = resumable_study("constraint-landing", prepared_dir, teacher_dir)
    teacher_dir = Path(teacher_dir)
    for setting in settings:
        for target in targets:
            key = f"{setting} @ {target}"
            if key in runs and runs[key]["overrides"] == SETTINGS[setting]:
                continue
            runs[key] = search_run(params.prune, SETTINGS[setting], target, Path(prepared_dir), teacher_dir)
            path = write_experiment(
                name,
                __doc__,
                torch.get_num_threads(),
                {
                    "task": spec.name,
                    "epochs": params.prune.epochs,
                    "seed": params.prune.seed,
                    "macs_tolerance": params.prune.macs_tolerance,
                    "runs": runs,
                },
            )
            plot(spec.name, runs, path.with_suffix(".png"))
    return EXPERIMENTS_DIR / f"{name}.json"


def main(argv: list[str] | None = None) -> None:
    parser = study_parser(__doc__, SETTINGS, TARGETS)
    args = parser.parse_args(argv)
    run_stage(
        "constraint_landing",
        lambda params: study(params, args.settings, args.targets, args.prepared_dir, args.teacher_dir),
    )


if __name__ == "__main__":
    main()
