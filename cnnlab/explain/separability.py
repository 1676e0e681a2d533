"""How well a feature space separates the classes: silhouette, k-NN accuracy, neighbourhood hit.

Silhouette (Rousseeuw, 1987) with Euclidean distances; k-NN accuracy leave-one-out (each point
voted on by its k nearest others); neighbourhood hit (Paulovich et al., 2008, as used by Rauber et
al., TVCG 2017): the mean fraction of a point's k nearest neighbours that share its class. All
three come from one pass over all pairwise Euclidean distances, computed in row blocks so memory
stays at block_size x N.
"""

from __future__ import annotations

import torch

METRICS = ("silhouette", "knn_accuracy", "neighbourhood_hit")


def separability(
    features: torch.Tensor, labels: torch.Tensor, k: int = 5, block_size: int = 1024
) -> dict[str, float]:
    """Silhouette, k-NN accuracy and neighbourhood hit of points [N, F] with labels [N]."""
    x = features.float()
    labels = labels.long().cpu()
    n = len(x)
    if n < 3:
        return {name: float("nan") for name in METRICS}
    classes, labels = torch.unique(labels, return_inverse=True)
    num_classes = len(classes)
    k = max(1, min(k, n - 1))
    one_hot = torch.nn.functional.one_hot(labels, num_classes).float()  # [N, K]
    class_sizes = one_hot.sum(0).double()  # [K]
    # Few dimensions: exact differences; many: the matrix-product form, far faster (float32 keeps
    # about 7 digits of each distance, plenty for averages and neighbour ranks).
    mode = "donot_use_mm_for_euclid_dist" if x.shape[1] <= 8 else "use_mm_for_euclid_dist"
    silhouettes, votes_right, hits = [], 0, 0.0
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        distances = torch.cdist(x[start:stop], x, compute_mode=mode)  # [b, N] float32
        rows = torch.arange(stop - start)
        own = labels[start:stop]
        # Silhouette: mean distance to the own class (self excluded) and to the nearest other one.
        class_sums = (distances @ one_hot).double()  # [b, K]
        class_sums[rows, own] -= distances[rows, rows + start].double()  # ~0, but not exactly
        own_sizes = class_sizes[own]
        a = class_sums[rows, own] / (own_sizes - 1).clamp(min=1)
        means = class_sums / class_sizes
        means[rows, own] = float("inf")
        b = means.min(dim=1).values
        s = (b - a) / torch.maximum(a, b).clamp(min=1e-300)
        s[own_sizes <= 1] = 0.0  # a point alone in its class scores 0, as in scikit-learn
        silhouettes.append(s if num_classes > 1 else torch.zeros_like(s))
        # k nearest other points: self excluded by an infinite distance to itself.
        distances[rows, rows + start] = float("inf")
        neighbours = distances.topk(k, dim=1, largest=False).indices  # [b, k]
        neighbour_labels = labels[neighbours]
        same = neighbour_labels == own[:, None]
        hits += same.double().mean(dim=1).sum().item()
        counts = torch.nn.functional.one_hot(neighbour_labels, num_classes).sum(1)  # [b, K]
        votes_right += int((counts.argmax(1) == own).sum())  # ties go to the lower class index
    return {
        "silhouette": torch.cat(silhouettes).mean().item(),
        "knn_accuracy": votes_right / n,
        "neighbourhood_hit": hits / n,
    }


def chance_levels(labels: torch.Tensor, k: int = 5) -> dict[str, float]:
    """What a space without class structure scores: silhouette 0, neighbourhood hit the chance
    that a random other point shares the class, k-NN accuracy about the largest class share."""
    counts = torch.bincount(labels.long()).double()
    counts = counts[counts > 0]
    n = counts.sum()
    same_class = ((counts * (counts - 1)).sum() / (n * (n - 1))).item() if n > 1 else 0.0
    return {
        "silhouette": 0.0,
        "knn_accuracy": (counts.max() / n).item(),
        "neighbourhood_hit": same_class,
    }


def depth_trend(values: list[float], names: list[str]) -> dict:
    """Does a metric grow with depth? Says so plainly, naming every layer where it drops: any
    fall counts, however small (no tolerance that would let 0.1672 -> 0.1659 pass as growth)."""
    drops = [
        {"from": names[i], "to": names[i + 1], "change": round(values[i + 1] - values[i], 4)}
        for i in range(len(values) - 1)
        if values[i + 1] < values[i]
    ]
    first, last = values[0], values[-1]
    grows_overall = last > first
    if grows_overall and not drops:
        verdict = (
            f"grows with depth at every step ({names[0]} {first:.3f} -> {names[-1]} {last:.3f})"
        )
    elif grows_overall:
        where = ", ".join(f"{d['from']} -> {d['to']} ({d['change']:+.3f})" for d in drops)
        verdict = (
            f"grows overall ({names[0]} {first:.3f} -> {names[-1]} {last:.3f}) but not at every "
            f"step: it falls at {where}"
        )
    else:
        verdict = f"does not grow with depth ({names[0]} {first:.3f} -> {names[-1]} {last:.3f})"
    return {
        "grows_overall": grows_overall,
        "grows_at_every_step": grows_overall and not drops,
        "drops": drops,
        "verdict": verdict,
    }
