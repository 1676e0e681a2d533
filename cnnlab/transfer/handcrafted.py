"""Hand-crafted image features on scikit-image, one registry: LBP (Ojala 2002), GLCM properties
(Haralick 1973), Hu moments (Hu 1962), shape of the largest object, HOG (Dalal & Triggs 2005),
intensity histograms and entropy. Computed per band and concatenated."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from cnnlab.errors import ConfigError
from cnnlab.registry import Registry

LBP_POINTS, LBP_RADII = 8, (1, 2, 3)
GLCM_LEVELS, GLCM_DISTANCES = 32, (1, 2)
GLCM_ANGLES = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
GLCM_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
HISTOGRAM_BINS = 16
HOG_CELLS, HOG_ORIENTATIONS = 4, 9  # a 4 x 4 grid of cells whatever the image size
PARALLEL_MIN_IMAGES = 512  # below this a process pool costs more than it saves


@dataclass(frozen=True)
class Extractor:
    """uint8 [N, H, W] (one band) -> float [N, D], the same D for every image of a size."""

    name: str
    description: str
    compute: Callable[[np.ndarray], np.ndarray]


EXTRACTORS: Registry[Extractor] = Registry("hand-crafted feature")


def _register(name: str, description: str) -> Callable:
    def decorator(compute: Callable[[np.ndarray], np.ndarray]) -> Callable:
        EXTRACTORS.add(name, Extractor(name, description, compute))
        return compute

    return decorator


def shannon_entropy(counts: np.ndarray) -> np.ndarray:
    """Entropy in bits of histograms [N, bins] (counts or shares): -sum p log2 p, 0 log 0 = 0."""
    counts = np.asarray(counts, dtype=np.float64)
    p = counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1e-300)
    logs = np.log2(np.where(p > 0, p, 1.0))
    return -(p * logs).sum(axis=-1)


def band_histograms(images: np.ndarray, bins: int) -> np.ndarray:
    """Normalised histograms of uint8 [N, H, W] in `bins` equal ranges of 0..255: [N, bins]."""
    n = len(images)
    index = images.reshape(n, -1).astype(np.int64) * bins // 256  # [N, H*W]
    index += np.arange(n)[:, None] * bins
    counts = np.bincount(index.ravel(), minlength=n * bins).reshape(n, bins)
    return counts / images[0].size


@_register("histogram", f"{HISTOGRAM_BINS}-bin intensity histogram and its entropy (8 bits)")
def histogram_features(images: np.ndarray) -> np.ndarray:
    fine = band_histograms(images, 256)  # the entropy of the full 256-level histogram
    return np.concatenate(
        [band_histograms(images, HISTOGRAM_BINS), shannon_entropy(fine)[:, None]], 1
    )


def lbp_histogram(image: np.ndarray, radius: int, points: int = LBP_POINTS) -> np.ndarray:
    """Uniform rotation-invariant LBP codes (0..P+1) of one image as a normalised histogram.

    The image is edge-padded by the radius first, so border pixels compare with copies of the
    border instead of zeros (a constant image then has the code P everywhere).
    """
    from skimage.feature import local_binary_pattern

    padded = np.pad(image, radius, mode="edge")  # integer: exact comparisons
    codes = local_binary_pattern(padded, points, radius, method="uniform")
    codes = codes[radius:-radius, radius:-radius].astype(np.int64)
    return np.bincount(codes.ravel(), minlength=points + 2) / codes.size


@_register("lbp", f"uniform LBP histograms, P={LBP_POINTS}, radii {LBP_RADII}")
def lbp_features(images: np.ndarray) -> np.ndarray:
    return np.stack([np.concatenate([lbp_histogram(im, r) for r in LBP_RADII]) for im in images])


def glcm_properties(
    image: np.ndarray,
    levels: int = 256,
    distances: Sequence[int] = GLCM_DISTANCES,
    angles: Sequence[float] = GLCM_ANGLES,
) -> np.ndarray:
    """Haralick's properties of the symmetric normalised co-occurrence matrix of an image with
    values 0..levels-1: [properties x distances x angles], in GLCM_PROPERTIES order."""
    from skimage.feature import graycomatrix, graycoprops

    matrix = graycomatrix(image, list(distances), list(angles), levels, symmetric=True, normed=True)
    return np.concatenate([graycoprops(matrix, p).ravel() for p in GLCM_PROPERTIES])


@_register("glcm", f"GLCM properties ({', '.join(GLCM_PROPERTIES)}) at {GLCM_LEVELS} levels")
def glcm_features(images: np.ndarray) -> np.ndarray:
    quantised = (images.astype(np.int64) * GLCM_LEVELS // 256).astype(np.uint8)
    return np.stack([glcm_properties(im, GLCM_LEVELS) for im in quantised])


def object_mask(image: np.ndarray) -> np.ndarray:
    """The pixels above Otsu's threshold (bool [H, W]); none for a constant image."""
    from skimage.filters import threshold_otsu

    if image.min() == image.max():
        return np.zeros(image.shape, dtype=bool)
    return image > threshold_otsu(image)


def hu_moments(mask: np.ndarray) -> np.ndarray:
    """Hu's seven moment invariants of a binary mask (zeros for an empty mask)."""
    from skimage.measure import moments_central, moments_hu, moments_normalized

    if not mask.any():
        return np.zeros(7)
    central = moments_central(mask.astype(np.float64), order=3)
    return moments_hu(moments_normalized(central, order=3))


@_register("hu", "Hu's 7 moment invariants of the Otsu object mask, as sign * log10|h|")
def hu_features(images: np.ndarray) -> np.ndarray:
    hu = np.stack([hu_moments(object_mask(im)) for im in images])
    return np.sign(hu) * np.log10(np.abs(hu) + 1e-30) / 30.0  # spans ~30 decades -> ~[-1, 1]


def shape_properties(mask: np.ndarray) -> np.ndarray:
    """Area and perimeter (shares of the image's), roundness 4 pi A / P^2, eccentricity and
    solidity of the largest connected component of a mask; zeros when the mask is empty."""
    from skimage.measure import label, regionprops

    regions = regionprops(label(mask, connectivity=2))
    if not regions:
        return np.zeros(5)
    region = max(regions, key=lambda r: r.area)
    area, perimeter = float(region.area), float(region.perimeter)
    roundness = 4 * math.pi * area / perimeter**2 if perimeter > 0 else 1.0
    height, width = mask.shape
    return np.array(
        [
            area / mask.size,
            perimeter / (2 * (height + width)),
            min(roundness, 1.0),
            region.eccentricity,
            region.solidity,
        ]
    )


@_register("shape", "area, perimeter, roundness, eccentricity, solidity of the largest object")
def shape_features(images: np.ndarray) -> np.ndarray:
    return np.stack([shape_properties(object_mask(im)) for im in images])


@_register(
    "hog", f"HOG, {HOG_ORIENTATIONS} orientations, {HOG_CELLS}x{HOG_CELLS} cells, 2x2 blocks"
)
def hog_features(images: np.ndarray) -> np.ndarray:
    from skimage.feature import hog

    height, width = images.shape[1:]
    cell = (max(1, height // HOG_CELLS), max(1, width // HOG_CELLS))
    return np.stack(
        [
            hog(im, HOG_ORIENTATIONS, cell, (2, 2), block_norm="L2-Hys", feature_vector=True)
            for im in images
        ]
    )


def _band_features(images: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """uint8 [N, C, H, W] -> float32 [N, D]: each extractor on each band, concatenated."""
    parts = [
        EXTRACTORS.get(name).compute(np.ascontiguousarray(images[:, band]))
        for band in range(images.shape[1])
        for name in names
    ]
    return np.concatenate(parts, axis=1).astype(np.float32)


def handcrafted_features(
    images: np.ndarray,
    names: Sequence[str] | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """uint8 images [N, C, H, W] -> float32 features [N, D] of the named extractors (all by
    default), per band. workers: processes (default: the cores available, for 512+ images)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ConfigError(
            f"Hand-crafted features need uint8 images [N, C, H, W] with N >= 1; got dtype "
            f"{images.dtype} and shape {images.shape}. Pass the data set's images as read."
        )
    names = tuple(names) if names else tuple(EXTRACTORS.names())
    for name in names:
        EXTRACTORS.get(name)  # an unknown name fails here, with close names suggested
    if workers is None:
        workers = _available_cores() if len(images) >= PARALLEL_MIN_IMAGES else 1
    if workers <= 1:
        return _band_features(images, names)
    chunks = np.array_split(images, workers * 4)
    with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
        parts = list(pool.map(_band_features, chunks, [names] * len(chunks)))
    return np.concatenate(parts)


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _pool_context():
    import multiprocessing

    # Workers run only numpy and scikit-image, never torch, so forking is safe and starts fast.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")
