"""Ranking distillation: the teacher's final-layer token ranking taught to the student's early layers.

The loss is LambdaLoss's ARP2 pairwise form (Wang et al. 2018, sigma = 1), reimplemented: for every pair of
items whose teacher relevance differs, ``(y_a - y_b) * log2(1 + exp(-(s_a - s_b)))``, summed per example,
divided by K^2 and averaged over the batch. Items are the teacher's top-K tokens with relevance K..1.

The student's scores enter as they are (``raw``, the authors' form) or as their logarithms (``log``). Raw
received attention is about 1/n per token, so score gaps are a few hundredths and softplus(-gap) barely moves
from log 2: the loss sits near its starting value. Log scores turn the gaps into log ratios of order one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from top.params import RankScores

# Floor under a score before its logarithm: only live tokens are ranked, and their attention is never 0 in float32.
SMALLEST_SCORE = 1e-30


def teacher_top_k(
    teacher_scores: torch.Tensor, valid: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The teacher's top-k tokens per example: positions, relevance (k..1) and which items are real.

    Examples with fewer than k valid tokens get fewer items; the missing ones are masked out rather than
    ranked as zero-relevance padding, so padding never enters the loss.
    """
    k = min(k, teacher_scores.shape[1])
    masked = teacher_scores.masked_fill(~valid, float("-inf"))
    positions = masked.topk(k, dim=1).indices
    item_valid = torch.gather(valid, 1, positions)
    relevance = torch.arange(k, 0, -1, device=teacher_scores.device, dtype=teacher_scores.dtype)
    relevance = relevance.expand(teacher_scores.shape[0], k) * item_valid
    return positions, relevance, item_valid


def lambda_arp2_loss(scores: torch.Tensor, relevance: torch.Tensor, item_valid: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the per-example ARP2 loss divided by K^2 (K = items per example)."""
    score_gap = scores[:, :, None] - scores[:, None, :]
    relevance_gap = relevance[:, :, None] - relevance[:, None, :]
    pair_valid = item_valid[:, :, None] & item_valid[:, None, :] & (relevance_gap > 0)
    pair_loss = relevance_gap * F.softplus(-score_gap) / math.log(2.0)
    per_example = (pair_loss * pair_valid).sum(dim=(1, 2)) / scores.shape[1] ** 2
    return per_example.mean()


def ranking_distillation_loss(
    student_scores: torch.Tensor,
    teacher_scores: torch.Tensor,
    valid: torch.Tensor,
    k: int,
    scores: RankScores = "raw",
) -> torch.Tensor:
    """ARP2 loss of the student's token scores (``scores``: as they are, or their logarithms) at the teacher's
    top-k positions."""
    positions, relevance, item_valid = teacher_top_k(teacher_scores, valid, k)
    ranked = torch.gather(student_scores, 1, positions)
    if scores == "log":
        ranked = ranked.clamp_min(SMALLEST_SCORE).log()
    return lambda_arp2_loss(ranked, relevance, item_valid)
