"""The book's losses and evaluation, below the trainer and the measures (both import them from here).

All of them work on logits with any leading dimensions, ``[N, C]`` or ``[K, N, C]`` for an ensemble of
``K`` nets, and a single logit ``[.., 1]`` stands for the two-class logits ``[0, z]``:

- :func:`cross_entropy`, per example ``−log p_θ(x, y)``;
- :func:`reverse_cross_entropy`, per example ``−log(1 − p_θ(x, y))``, computed stably (Huang et al.'s poison term);
- :func:`poisoned_loss`, Huang et al.'s eq. 2;
- :func:`accuracy` and :func:`evaluate` (mean loss and accuracy of a model on a data set).
"""

from __future__ import annotations

import torch
from torch import nn

from .data import Data



def class_logits(out: torch.Tensor) -> torch.Tensor:
    """Two-class logits ``[0, z]`` from a single logit ``z`` (so softmax CE equals the logistic loss)."""
    return torch.cat([torch.zeros_like(out), out], -1) if out.shape[-1] == 1 else out


def _label_index(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return y.expand(logits.shape[:-1]).unsqueeze(-1)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example ``−log p_θ(x, y)``."""
    logits = class_logits(logits)
    return -logits.log_softmax(-1).gather(-1, _label_index(logits, y)).squeeze(-1)


def reverse_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example ``−log(1 − p_θ(x, y))``, computed stably as ``logsumexp(z) − logsumexp(z_{j≠y})``."""
    logits = class_logits(logits)
    others = logits.scatter(-1, _label_index(logits, y), float("-inf"))
    return torch.logsumexp(logits, -1) - torch.logsumexp(others, -1)


def poisoned_loss(logits: torch.Tensor, y: torch.Tensor, poison_logits: torch.Tensor | None = None,
                  poison_y: torch.Tensor | None = None, poison_factor=0.0) -> torch.Tensor:
    """Huang et al. eq. 2: ``(1−β)·mean CE(train) + β·mean reverse CE(poison)``.

    Means are over the example dimension (the one before the classes), so ensemble logits
    ``[K, N, C]`` give ``K`` losses; ``poison_factor`` may be a float or a ``[K]`` tensor.
    """
    beta = torch.as_tensor(poison_factor, dtype=logits.dtype, device=logits.device)
    loss = (1 - beta) * cross_entropy(logits, y).mean(-1)
    if poison_logits is not None:
        loss = loss + beta * reverse_cross_entropy(poison_logits, poison_y).mean(-1)
    elif bool((beta != 0).any()):
        raise ValueError("poison_factor > 0 needs poison logits and labels")
    return loss


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of examples whose largest logit is the label (mean over the example dimension)."""
    return (class_logits(logits).argmax(-1) == y).float().mean(-1)


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, batch_size: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and accuracy of ``model`` on ``data`` (eval mode); ``[K]`` for an ensemble."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss = correct = 0.0
    for start in range(0, len(data), batch_size):
        X, y = data.X[start: start + batch_size].to(device), data.y[start: start + batch_size].to(device)
        out = model(X)
        loss = loss + cross_entropy(out, y).sum(-1)
        correct = correct + (class_logits(out).argmax(-1) == y).sum(-1)
    model.train(was_training)
    n = len(data)
    return torch.as_tensor(loss / n).double().cpu().reshape(-1), torch.as_tensor(correct / n).double().cpu().reshape(-1)
