"""Neuron maps after Rauber et al., "Visualizing the Hidden Activity of Artificial Neural
Networks" (TVCG 2017): a layer's neurons placed in 2-D by the similarity of their activation
profiles, coloured by how well each one tells a class from the rest (ROC AUC).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SPECIALISED_AUC = 0.9  # a neuron "specialises" in a class when its AUC for it reaches this


@dataclass
class NeuronMap:
    layer: str
    positions: torch.Tensor  # [U, 2]: metric MDS of the correlation distances
    auc: torch.Tensor  # [K, U]: ROC AUC of each neuron's activation for class k against the rest
    dead: torch.Tensor  # [U] bool: constant over all images (no profile to compare)
    stress: float  # Kruskal's stress-1 of the layout (0 = distances kept exactly)


def roc_auc(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """ROC AUC of each column of scores [N, U] for the boolean labels positive [N], via the
    Mann-Whitney U statistic with tied scores given their average rank. 0.5 when a class is
    absent or present everywhere."""
    positive = positive.bool()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return torch.full((scores.shape[1],), 0.5)
    ranks = _average_ranks(scores.double())  # [N, U], 1-based
    rank_sum = ranks[positive].sum(0)
    return ((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).float()


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N down each column, ties sharing the mean of the ranks they span."""
    n = x.shape[0]
    order = x.argsort(dim=0, stable=True)
    sorted_x = x.gather(0, order)
    position = torch.arange(1, n + 1, dtype=torch.float64)[:, None].expand_as(x)
    # Each run of equal values gets the mean of its positions: via run ids and scatter-add.
    new_run = torch.ones_like(sorted_x, dtype=torch.bool)
    new_run[1:] = sorted_x[1:] != sorted_x[:-1]
    run_id = new_run.long().cumsum(0) - 1  # [N, U]
    sums = torch.zeros_like(sorted_x).scatter_add_(0, run_id, position)
    counts = torch.zeros_like(sorted_x).scatter_add_(0, run_id, torch.ones_like(position))
    ranks_sorted = (sums / counts.clamp(min=1)).gather(0, run_id)
    return torch.empty_like(x).scatter_(0, order, ranks_sorted)


def correlation_distances(activations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """1 - Pearson correlation between the activation profiles (columns of [N, U]): neurons that
    fire for the same images are close. Dead neurons are at distance 1 from all others."""
    x = activations.double()
    x = x - x.mean(dim=0)
    norms = x.norm(dim=0)
    dead = norms <= 1e-12 * max(1.0, float(norms.max()) if len(norms) else 1.0)
    x = x / torch.where(dead, 1.0, norms)
    distances = (1.0 - x.T @ x).clamp(min=0.0, max=2.0)
    distances[dead, :] = 1.0
    distances[:, dead] = 1.0
    distances.fill_diagonal_(0.0)
    return distances, dead


def classical_mds(distances: torch.Tensor) -> torch.Tensor:
    """Torgerson's classical MDS: the top two eigenvectors of the double-centred squared
    distances, scaled by the square roots of their eigenvalues."""
    n = len(distances)
    squared = distances.double() ** 2
    centring = torch.eye(n, dtype=torch.float64) - 1.0 / n
    b = -0.5 * centring @ squared @ centring
    values, vectors = torch.linalg.eigh(b)  # ascending
    values, vectors = values.flip(0)[:2].clamp(min=0.0), vectors.flip(1)[:, :2]
    if vectors.shape[1] < 2:
        vectors = torch.cat([vectors, vectors.new_zeros(n, 2 - vectors.shape[1])], dim=1)
        values = torch.cat([values, values.new_zeros(2 - len(values))])
    signs = torch.sign(vectors[vectors.abs().argmax(0), torch.arange(2)])
    return vectors * torch.where(signs == 0, 1.0, signs) * values.sqrt()


def smacof(distances: torch.Tensor, iterations: int = 300, tolerance: float = 1e-6) -> tuple:
    """Metric MDS by SMACOF (de Leeuw, 1977) from the classical MDS layout: repeated Guttman
    transforms, each lowering the raw stress. Returns (positions [U, 2], Kruskal stress-1)."""
    d = distances.double()
    n = len(d)
    x = classical_mds(d)
    if n < 3:
        return x.float(), 0.0
    previous = float("inf")
    for _ in range(iterations):
        current = torch.cdist(x, x)
        ratio = torch.where(current > 1e-12, d / current.clamp(min=1e-12), 0.0)
        b = -ratio
        b.diagonal().copy_(ratio.sum(1) - ratio.diagonal())
        x = b @ x / n
        stress = float(((torch.cdist(x, x) - d) ** 2).sum() / 2)
        if previous - stress < tolerance * max(previous, 1e-12):
            break
        previous = stress
    stress1 = (((torch.cdist(x, x) - d) ** 2).sum() / (d**2).sum().clamp(min=1e-300)).sqrt()
    return x.float(), float(stress1)


def neuron_map(layer: str, activations: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """The map of one layer from its activations [N, U] (mean per channel for conv layers)."""
    distances, dead = correlation_distances(activations)
    positions, stress = smacof(distances)
    labels = labels.long()
    auc = torch.stack([roc_auc(activations, labels == c) for c in range(num_classes)])
    return NeuronMap(layer, positions, auc, dead, stress)


def top_activating(activations: torch.Tensor, neuron: int, count: int) -> torch.Tensor:
    """Rows of the `count` images that drive `neuron` hardest, strongest first."""
    count = min(count, activations.shape[0])
    return activations[:, neuron].topk(count).indices


def selected_neurons(auc: torch.Tensor) -> list[int]:
    """For each class, the live neuron with the highest AUC for it (the class's best detector)."""
    return [int(auc[c].argmax()) for c in range(auc.shape[0])]


def specialisation(neurons: NeuronMap, class_names: list[str]) -> dict:
    """How specialised the neurons are: per neuron its best class and AUC; per class how many
    neurons reach SPECIALISED_AUC for it; overall the mean best AUC of the live neurons."""
    live = ~neurons.dead
    best_auc, best_class = neurons.auc.max(dim=0)
    per_class = {
        name: int(((neurons.auc[c] >= SPECIALISED_AUC) & live).sum())
        for c, name in enumerate(class_names)
    }
    return {
        "neurons": int(len(live)),
        "dead_neurons": int((~live).sum()),
        "mean_best_auc": float(best_auc[live].mean()) if live.any() else float("nan"),
        "specialised_threshold": SPECIALISED_AUC,
        "specialised_neurons": int(((best_auc >= SPECIALISED_AUC) & live).sum()),
        "specialised_per_class": per_class,
        "classes_without_a_specialist": [name for name, count in per_class.items() if count == 0],
        "best_class": [class_names[int(c)] for c in best_class],
        "best_auc": [round(float(a), 4) for a in best_auc],
    }
