"""Where the stages keep their outputs (the paths dvc.yaml declares), in a module that imports nothing heavy.

A stage that only needs another stage's output directory imports it from here, not from that stage's entry
point, so its DVC deps do not grow to the other stage's code (a change to the teacher's training loop must not
rerun the benchmark).
"""

from pathlib import Path

PREPARED_DIR = "data/prepared"
TEACHER_DIR = "artifacts/teacher"
TEACHER_LIVE_DIR = "artifacts/teacher_live"
# Resumable training state of every stage that trains (a subdirectory each), outside every DVC output: DVC
# deletes a stage's outputs before rerunning it, and resume needs these.
CHECKPOINT_ROOT = "artifacts/checkpoints"
PRUNED_DIR = "artifacts/pruned"
PRUNE_LIVE_DIR = "artifacts/prune_live"
INT8_DIR = "artifacts/int8"
# FP32 source of each INT8 model; the benchmark uses the same names.
INT8_SOURCES = {"teacher": Path(TEACHER_DIR), "top": Path(PRUNED_DIR)}
FLEX_DIR = "artifacts/flex"
