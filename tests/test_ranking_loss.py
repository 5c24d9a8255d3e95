"""ARP2 ranking loss against a brute-force double loop."""

import math

import torch

from top.pruning.ranking_loss import lambda_arp2_loss, ranking_distillation_loss, teacher_top_k


def brute_force_arp2(scores, relevance, item_valid):
    total = 0.0
    batch, k = scores.shape
    for b in range(batch):
        example = 0.0
        for i in range(k):
            for j in range(k):
                if item_valid[b, i] and item_valid[b, j] and relevance[b, i] > relevance[b, j]:
                    gap = float(scores[b, i] - scores[b, j])
                    example += float(relevance[b, i] - relevance[b, j]) * math.log2(1 + math.exp(-gap))
        total += example / k**2
    return total / batch


def test_arp2_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    relevance = torch.tensor([[5, 4, 3, 2, 1], [5, 4, 3, 2, 1], [3, 2, 1, 0, 0]], dtype=torch.float64)
    item_valid = torch.tensor([[True] * 5, [True] * 5, [True, True, True, False, False]])
    loss = lambda_arp2_loss(scores, relevance, item_valid)
    assert math.isclose(loss.item(), brute_force_arp2(scores, relevance, item_valid), rel_tol=1e-12)


def test_loss_falls_as_the_student_agrees_with_the_teacher():
    relevance = torch.tensor([[3.0, 2.0, 1.0]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    agree = lambda_arp2_loss(torch.tensor([[3.0, 2.0, 1.0]]), relevance, valid)
    disagree = lambda_arp2_loss(torch.tensor([[1.0, 2.0, 3.0]]), relevance, valid)
    assert agree < disagree


def test_teacher_top_k_ranks_valid_tokens_only():
    teacher = torch.tensor([[0.1, 0.5, 0.2, 0.9], [0.3, 0.1, 0.8, 0.7]])
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    positions, relevance, item_valid = teacher_top_k(teacher, valid, k=3)
    assert positions[0].tolist() == [1, 2, 0]  # position 3 is padding despite its score
    assert positions[1].tolist() == [2, 3, 0]
    assert relevance.tolist() == [[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]
    assert item_valid.all()
    short = torch.tensor([[True, True, False, False], [True, True, True, True]])
    _, relevance, item_valid = teacher_top_k(teacher, short, k=3)
    assert item_valid[0].tolist() == [True, True, False] and relevance[0, 2] == 0


def test_gradient_reaches_student_scores():
    student = torch.randn(2, 6, requires_grad=True)
    teacher = torch.randn(2, 6)
    ranking_distillation_loss(student, teacher, torch.ones(2, 6, dtype=torch.bool), k=4).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_log_scores_separate_the_pairs_that_raw_attention_leaves_near_log_2():
    """Raw received attention of ~1/n gives pair gaps of hundredths: the loss barely moves off its start. The
    log form sees the same order as ratios, so a correctly ranked student scores far lower than a reversed one."""
    teacher = torch.tensor([[0.0, 0.05, 0.04, 0.03, 0.02, 0.01]])
    valid = torch.tensor([[False, True, True, True, True, True]])
    right, wrong = teacher.clone(), teacher.flip(1).roll(1, dims=1)
    raw = [ranking_distillation_loss(s, teacher, valid, 5, "raw") for s in (right, wrong)]
    log = [ranking_distillation_loss(s, teacher, valid, 5, "log") for s in (right, wrong)]
    assert raw[1] / raw[0] < 1.1
    assert log[1] / log[0] > 2.0
