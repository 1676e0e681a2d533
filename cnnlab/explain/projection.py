"""2-D projections of each layer's feature space (PCA, t-SNE, UMAP), aligned across layers.

t-SNE is openTSNE (Policar et al., 2024; van der Maaten & Hinton, 2008) on a 50-D PCA reduction;
UMAP is umap-learn (McInnes et al., 2018). Successive layers start from the previous layer's
embedding and are Procrustes-aligned to it, so a point moves smoothly across the small multiples
(the idea of Rauber et al.'s dynamic t-SNE, EuroVis 2016, in its simplest form).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch

from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry

PCA_DIMENSIONS = 50  # openTSNE on raw 128-D inputs took 2.3x as long as on 50-D (PERF-NOTES.md)

# A projector maps features [N, F] to [N, 2], optionally starting from an embedding [N, 2].
Projector = Callable[[torch.Tensor, torch.Tensor | None, int], torch.Tensor]
PROJECTIONS: Registry[Projector] = Registry("projection method")


def pca(features: torch.Tensor, dimensions: int, seed: int = 0) -> torch.Tensor:
    """The first `dimensions` principal components [N, d] of features [N, F], signs fixed so the
    largest loading of each component is positive (the same input always gives the same output).

    Small problems use an exact SVD; larger ones a randomised SVD (Halko et al., 2011) with a
    fixed seed, in float32 (the neighbourhoods t-SNE and UMAP use do not need more)."""
    x = features.float()
    x = x - x.mean(dim=0, keepdim=True)
    wanted, dimensions = dimensions, min(dimensions, *x.shape)
    if min(x.shape) <= 4 * dimensions:
        _, _, vh = torch.linalg.svd(x.double(), full_matrices=False)
        components = vh[:dimensions].T.float()  # [F, d]
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, _, components = torch.pca_lowrank(x, q=dimensions + 10, center=False, niter=3)
        components = components[:, :dimensions]
    largest = components.abs().argmax(dim=0)
    signs = torch.sign(components[largest, torch.arange(components.shape[1])])
    components = components * torch.where(signs == 0, 1.0, signs)
    projected = x @ components
    if projected.shape[1] < wanted:  # fewer features or points than asked: pad with zeros
        padding = projected.new_zeros(len(projected), wanted - projected.shape[1])
        projected = torch.cat([projected, padding], dim=1)
    return projected


@PROJECTIONS.register("pca")
def project_pca(features: torch.Tensor, init: torch.Tensor | None, seed: int) -> torch.Tensor:
    """The two leading principal components (linear, deterministic)."""
    return pca(features, 2, seed)


@PROJECTIONS.register("tsne")
def project_tsne(features: torch.Tensor, init: torch.Tensor | None, seed: int) -> torch.Tensor:
    """openTSNE on PCA-50, starting from `init` or from PCA.

    From PCA it runs openTSNE's full schedule (250 exaggerated + 500 plain iterations). From the
    previous layer's embedding, whose clusters are already formed, it runs 50 + 200: on the layers
    of a Fashion-MNIST LeNet-5 (10,000 test images) the 2-D k-NN accuracy stayed within 0.003 of
    the full schedule's (features.c1: 0.820 vs 0.823) in about a third of the time. The FFT grid
    uses intervals of 2 units instead of 1 (`ints_in_interval`), which on features.c5 kept the 2-D
    k-NN accuracy (0.888 vs 0.889) at two thirds of the time. The 3 x perplexity nearest
    neighbours that define the affinities are found exactly, here in torch (openTSNE's own search
    is approximate and was several times slower on 10,000 points)."""
    from openTSNE import TSNE, affinity
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    x = pca(features, PCA_DIMENSIONS, seed)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
    neighbours, distances = nearest_neighbours(x, min(len(x) - 1, int(3 * perplexity)))
    affinities = affinity.PerplexityBasedNN(
        perplexity=perplexity,
        knn_index=PrecomputedNeighbors(neighbours.numpy(), distances.double().numpy()),
    )
    schedule = {}
    if init is None:
        start = x[:, :2]  # PCA, as openTSNE's default initialisation
    else:
        start = init
        schedule = {"early_exaggeration_iter": 50, "n_iter": 200}
    # openTSNE expects a tiny initial spread (std 1e-4, as in its own PCA initialisation).
    start = start - start.mean(dim=0)
    initialization = (start / start[:, 0].std().clamp(min=1e-12) * 1e-4).double().numpy()
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        random_state=seed,
        ints_in_interval=2,
        n_jobs=torch.get_num_threads(),
        verbose=False,
        **schedule,
    )
    embedding = tsne.fit(affinities=affinities, initialization=initialization)
    return torch.from_numpy(embedding.view(type(initialization)).copy()).float()


def nearest_neighbours(
    points: torch.Tensor, k: int, block_size: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest other points of each row of [N, D]: (indices [N, k], distances [N, k])."""
    indices, distances = [], []
    for start in range(0, len(points), block_size):
        block = torch.cdist(points[start : start + block_size], points)  # [b, N]
        rows = torch.arange(len(block))
        block[rows, rows + start] = float("inf")  # not its own neighbour
        values, found = block.topk(k, dim=1, largest=False)
        indices.append(found)
        distances.append(values)
    return torch.cat(indices), torch.cat(distances)


@PROJECTIONS.register("umap")
def project_umap(features: torch.Tensor, init: torch.Tensor | None, seed: int) -> torch.Tensor:
    """umap-learn on PCA-50, starting from `init` or from its spectral layout."""
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.expanduser("~/.cache/cnnlab/numba"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs is overridden by random_state, and says so
        import umap

        x = pca(features, PCA_DIMENSIONS, seed).numpy()
        start = "spectral" if init is None else _unit_box(init).double().numpy()
        reducer = umap.UMAP(
            n_components=2, n_neighbors=min(15, len(x) - 1), init=start, random_state=seed
        )
        return torch.from_numpy(reducer.fit_transform(x)).float()


def _unit_box(points: torch.Tensor) -> torch.Tensor:
    """Scale [N, 2] into [0, 10]^2, the range umap-learn's own initialisations use."""
    low, high = points.min(dim=0).values, points.max(dim=0).values
    return (points - low) / (high - low).clamp(min=1e-12) * 10.0


def procrustes_align(moving: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Rotate/reflect, scale and shift `moving` [N, 2] to best match `reference` [N, 2] in the
    least-squares sense (orthogonal Procrustes, Schönemann 1966). Distances within `moving` keep
    their ratios, so nothing about the projection's quality changes."""
    if moving.shape != reference.shape:
        raise CnnlabError(
            f"Procrustes alignment needs two embeddings of the same points; got shapes "
            f"{tuple(moving.shape)} and {tuple(reference.shape)}."
        )
    a = moving.double() - moving.double().mean(dim=0)
    b = reference.double() - reference.double().mean(dim=0)
    u, s, vh = torch.linalg.svd(a.T @ b)
    rotation = u @ vh  # [2, 2], orthogonal
    norm = (a * a).sum()
    scale = s.sum() / norm if norm > 0 else torch.tensor(1.0, dtype=torch.float64)
    return (scale * a @ rotation + reference.double().mean(dim=0)).to(moving.dtype)


def project_layers(
    features: list[torch.Tensor],
    method: str,
    seed: int,
    on_layer: Callable[[int, float], None] | None = None,
) -> list[torch.Tensor]:
    """One aligned 2-D embedding [N, 2] per layer, shallow to deep; `on_layer(index, seconds)`
    is called as each one is done, for progress output."""
    import time

    project = PROJECTIONS.get(method)
    embeddings: list[torch.Tensor] = []
    for index, layer_features in enumerate(features):
        start = time.perf_counter()
        previous = embeddings[-1] if embeddings else None
        embedding = project(layer_features, previous, seed)
        if previous is not None:
            embedding = procrustes_align(embedding, previous)
        embeddings.append(embedding)
        if on_layer is not None:
            on_layer(index, time.perf_counter() - start)
    return embeddings
