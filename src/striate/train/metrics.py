"""Classification metrics computed on device: loss, top-k accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class EvalResult:
    """Loss and accuracies over a whole split, plus its confusion matrix (rows: true class)."""

    loss: float
    top1: float
    top5: float
    confusion: torch.Tensor

    def per_class_accuracy(self) -> list[float | None]:
        """Fraction of each true class predicted correctly; None for a class with no test images."""
        totals = self.confusion.sum(1)
        accuracy = (self.confusion.diag().double() / totals.clamp_min(1).double()).tolist()
        return [a if n else None for a, n in zip(accuracy, totals.tolist())]


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """How many rows have the true label among their ``k`` highest logits (a 0-d tensor)."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels[:, None]).any(1).sum()


@torch.inference_mode()
def evaluate(model: torch.nn.Module, batches: object, num_classes: int, autocast: object) -> EvalResult:
    """Loss, top-1, top-5 and confusion matrix of ``model`` over ``batches`` (an iterable of (x, y))."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct1 = torch.zeros((), dtype=torch.int64)
    correct5 = torch.zeros((), dtype=torch.int64)
    confusion: torch.Tensor | None = None
    count = 0
    for x, y in batches:  # type: ignore[attr-defined]
        with autocast():  # type: ignore[operator]
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double().cpu()
        correct1 += topk_correct(logits, y, 1).cpu()
        correct5 += topk_correct(logits, y, 5).cpu()
        flat = torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes * num_classes).cpu()
        confusion = flat if confusion is None else confusion + flat
        count += int(y.shape[0])
    model.train(was_training)
    assert confusion is not None and count > 0, "evaluate() needs at least one batch"
    return EvalResult(float(loss_sum) / count, int(correct1) / count, int(correct5) / count,
                      confusion.view(num_classes, num_classes))
