"""`python -m studies.results_report`: docs/RESULTS.md is what the committed records and stage metrics give."""

import json

import pytest

from studies import results_report
from studies.results_report import REPORT, ROOT, compression_rows, main, record_run, render, schedule_row

PROVENANCE = [
    "[tiny.json](../artifacts/metrics/experiments/tiny.json)",
    "Intel Xeon (AMX), 2 threads",
    "`dvc repro` at `abcdef1`",
]


def tiny_record() -> dict:
    teacher = {"f1": 0.9, "accuracy": 0.85}
    return {
        "command": "dvc repro",
        "code_commit": "abcdef1234567890",
        "why": "a synthetic run",
        "machine": {"cpu": "Intel(R) Xeon(R) Processor", "isa_flags": ["avx2", "amx_int8"], "threads": 2},
        "prune": {
            "target_macs": 0.5,
            "f1": 0.88,
            "accuracy": 0.8,
            "teacher": teacher,
            "delta_points": -2.0,
            "macs_ratio_real_lengths": 0.5,
            "macs_ratio_padded_max_length": 0.2,
        },
        "baselines": {
            "metric": "f1",
            "teacher": 0.9,
            "details": {
                "static_topk": {"f1": 0.85, "macs_ratio_real_lengths": 0.51, "macs_ratio_padded_max_length": 0.21},
                "truncation": {"skipped": "no truncation here"},
            },
        },
        "quantize": {
            "enabled": True,
            "metric": "f1",
            "teacher": {
                "fp32": teacher,
                "int8": {"f1": 0.895},
                "prediction_agreement": 0.99,
                "macs_ratio_real_lengths": 1.0,
                "activation_algorithm": "kl",
            },
            "top": {
                "fp32": {"f1": 0.88},
                "int8": {"f1": 0.87},
                "prediction_agreement": 0.95,
                "macs_ratio_real_lengths": 0.5,
                "activation_algorithm": "kl",
            },
        },
    }


def test_the_committed_report_is_current():
    expected = render(ROOT)
    assert (ROOT / REPORT).read_text(encoding="utf-8") == expected, (
        "docs/RESULTS.md is out of date: run `python -m studies.results_report`"
    )


def test_a_run_gives_top_its_baselines_and_int8_rows_against_the_teacher():
    rows = compression_rows(record_run("tiny", tiny_record()))
    assert rows == [
        ["teacher, scored by the prune stage", "F1 0.9000, acc 0.8500", "1.0000", "", "", *PROVENANCE],
        ["ToP, target 0.5", "F1 0.8800, acc 0.8000", "0.5000 (0.2000)", "-2.00 pt", "", *PROVENANCE],
        ["static top-k, no training", "F1 0.8500", "0.5100 (0.2100)", "-5.00 pt", "", *PROVENANCE],
        ["truncation", "no truncation here", "", "", "", *PROVENANCE],
        ["teacher INT8 (kl ranges)", "F1 0.8950", "1.0000", "-0.50 pt", "99.0%", *PROVENANCE],
        ["ToP INT8 (kl ranges)", "F1 0.8700", "0.5000", "-3.00 pt", "95.0%", *PROVENANCE],
    ]


def test_the_teacher_row_comes_from_the_prune_stage_only_where_the_record_lacks_the_teacher_stage():
    record = tiny_record() | {"teacher": {"f1": 0.9, "accuracy": 0.85, "epochs": 3}}
    assert [row[0] for row in compression_rows(record_run("tiny", record))][:1] == ["ToP, target 0.5"]


def test_a_schedule_row_gives_each_layers_keep_ratio_what_is_left_and_the_ranking_agreement():
    record = tiny_record()
    record["prune"] |= {"steps": 1200, "keep_ratios": {"layer_2": 0.5, "layer_3": 0.4}}
    assert schedule_row(record_run("tiny", record)) == [
        "1,200",
        "F1 0.8800, acc 0.8000",
        "L2 0.50; L3 0.40",
        "20.0%",
        "not recorded",
        *PROVENANCE,
    ]
    record["prune"]["ranking_agreement"] = {
        who: {layer: {"kendall_tau": tau, "top_k_overlap": 0.5} for layer, tau in (("layer_2", low), ("layer_3", 0.3))}
        for who, low in (("teacher", 0.1), ("pruned", 0.25))
    }
    assert schedule_row(record_run("tiny", record))[4] == "L2 0.10 / 0.25; L3 0.30 / 0.30"
    record["prune"]["ranking_agreement"]["pruned"]["layer_3"]["kendall_tau"] = None  # defined for no example
    assert schedule_row(record_run("tiny", record))[4] == "L2 0.10 / 0.25; L3 0.30 / undefined"


def test_the_machine_column_names_where_a_model_trained_when_it_is_not_where_it_was_timed():
    cpu = {"cpu": "Intel(R) Xeon(R) Processor", "isa_flags": ["avx2", "amx_int8"], "threads": 2}
    record = tiny_record()
    record["teacher"] = {"machine": {"gpu": "NVIDIA H200"}}
    record["prune"]["machine"] = {"gpu": "NVIDIA H200"}
    assert record_run("tiny", record).machine == "Intel Xeon (AMX), 2 threads; trained on NVIDIA H200"
    record["teacher"]["machine"] = record["prune"]["machine"] = cpu
    assert record_run("tiny", record).machine == "Intel Xeon (AMX), 2 threads"
    del record["machine"]
    assert record_run("tiny", record).machine == "trained on Intel Xeon (AMX), 2 threads"
    del record["teacher"], record["prune"]["machine"]
    assert record_run("tiny", record).machine == results_report.NOT_RECORDED


def test_check_fails_on_a_stale_report_and_an_unplaced_record_is_still_listed(tmp_path, monkeypatch, capsys):
    experiments = tmp_path / "artifacts/metrics/experiments"
    experiments.mkdir(parents=True)
    (experiments / "tiny.json").write_text(json.dumps(tiny_record()), encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / REPORT).write_text("# edited by hand\n", encoding="utf-8")
    monkeypatch.setattr(results_report, "ROOT", tmp_path)

    with pytest.raises(SystemExit) as exit_info:
        main(["--check"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == ("docs/RESULTS.md is out of date: run `python -m studies.results_report`")

    main([])
    report = (tmp_path / REPORT).read_text(encoding="utf-8")
    assert (
        "## Other records" in report
        and "[tiny.json](../artifacts/metrics/experiments/tiny.json): a synthetic run" in report
    )
    main(["--check"])


def test_flex_seeds_give_grafting_and_the_dynamic_front_as_mean_and_std():
    def flex_run(name: str, grafted: float, plain: float, delta: float, below: int) -> results_report.Run:
        flex = {
            "grid_mean_dev_score_grafted": grafted,
            "grid_mean_dev_score_plain": plain,
            "grids": {"grafted": [{}] * 12},
            "best_tradeoff": {"report_macs_ratio": 0.4},
            "best_tradeoff_delta_points_report": delta,
            "static_points_below_dynamic_front": below,
        }
        return results_report.Run(name, {"flex": flex}, name, "", "")

    runs = {"a": flex_run("a", 0.85, 0.84, -1.0, 12), "b": flex_run("b", 0.84, 0.84, -3.0, 10)}
    assert results_report.flex_seeds_key(("a", "b"))(runs) == (
        "over 2 seeds, grafting moves the mean dev score of the 12 static subnets by +0.50 ± 0.71 points "
        "(per seed +1.00, +0.00); the best dynamic trade-off is -2.00 ± 1.41 points from the teacher at MACs "
        "0.400 ± 0.000; static subnets not below the dynamic front: 0, 2 of 12"
    )


def test_flex_speedups_read_the_same_runtime_speedup_against_the_macs_cut():
    entry = {
        "speedup_vs_dense_fp32_same_runtime": 1.6,
        "same_runtime_speedup_over_macs_reduction": 0.6,
        "macs_reduction": 2.667,
        "speedup_vs_fastest_dense": 1.3,
        "fastest_dense": "dense-fp32-ort",
    }
    assert results_report.flex_speedups({"flex-dynamic-fp32-eager/dynamic/batch_1": entry}) == (
        "Speed-ups on real lengths:\n\n- flex-dynamic-fp32-eager, batch 1: 1.60x over the teacher in the same "
        "runtime, 0.60 of its 2.67x MACs reduction; 1.30x over the fastest dense variant (dense-fp32-ort)"
    )
