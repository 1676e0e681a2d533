"""Hand-crafted features against oracles: hand-computed entropy and GLCM, skimage itself, Hu's
invariance to rotation, LBP of a constant image; the registry parametrises the shape checks."""

import math

import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops
from skimage.measure import perimeter

from cnnlab.errors import ConfigError, UnknownNameError
from cnnlab.transfer import handcrafted
from cnnlab.transfer.handcrafted import (
    EXTRACTORS,
    GLCM_PROPERTIES,
    glcm_properties,
    handcrafted_features,
    hu_moments,
    lbp_histogram,
    shannon_entropy,
)


def _images(n=6, channels=1, size=16, seed=0):
    generator = np.random.default_rng(seed)
    images = generator.integers(0, 60, size=(n, channels, size, size), dtype=np.uint8)
    images[:, :, 4:12, 5:11] += 150  # a bright object on a dark background
    return images


def test_entropy_of_known_histograms():
    assert shannon_entropy(np.array([[1, 1, 1, 1]]))[0] == pytest.approx(2.0)
    assert shannon_entropy(np.array([[5, 0, 0]]))[0] == pytest.approx(0.0)
    p = np.array([0.5, 0.25, 0.25])
    assert shannon_entropy(p[None])[0] == pytest.approx(1.5)


def test_histogram_of_two_level_image():
    image = np.zeros((1, 1, 4, 4), np.uint8)
    image[0, 0, :2] = 255  # half 0, half 255
    features = handcrafted_features(image, ["histogram"])[0]
    assert features[0] == pytest.approx(0.5) and features[15] == pytest.approx(0.5)
    assert features[-1] == pytest.approx(1.0)  # one bit


def test_lbp_of_constant_image_is_all_code_p():
    histogram = lbp_histogram(np.full((9, 9), 77, np.uint8), radius=2, points=8)
    expected = np.zeros(10)
    expected[8] = 1.0  # every neighbour >= centre: the uniform pattern of P ones
    np.testing.assert_allclose(histogram, expected)


def test_glcm_of_hand_made_image_matches_skimage_and_hand():
    image = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 2], [2, 2, 3, 3]], np.uint8)
    ours = glcm_properties(image, levels=4, distances=[1], angles=[0.0])
    matrix = graycomatrix(image, [1], [0.0], 4, symmetric=True, normed=True)
    direct = [graycoprops(matrix, p)[0, 0] for p in GLCM_PROPERTIES]
    np.testing.assert_allclose(ours, direct)
    # by hand: the symmetric matrix counts each horizontal pair in both directions
    pairs = [(a, b) for row in image for a, b in zip(row[:-1], row[1:], strict=True)]
    contrast = sum((int(a) - int(b)) ** 2 for a, b in pairs) * 2 / (2 * len(pairs))
    assert ours[0] == pytest.approx(contrast)


def test_hu_moments_invariant_to_rotation_by_90_degrees():
    mask = np.zeros((20, 20), bool)
    mask[3:15, 5:9] = True
    mask[12:15, 5:14] = True  # an L shape
    np.testing.assert_allclose(hu_moments(np.rot90(mask)), hu_moments(mask), rtol=1e-9, atol=1e-15)
    assert not np.allclose(hu_moments(mask), 0)


def test_shape_of_a_filled_square():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    area, _, roundness, eccentricity, solidity = handcrafted.shape_properties(mask)
    assert area == pytest.approx(100 / 400)
    assert eccentricity == pytest.approx(0.0, abs=1e-9) and solidity == pytest.approx(1.0)
    # skimage's perimeter runs through boundary pixel centres (about 4 * 9 here), not 4 * 10
    assert roundness == pytest.approx(4 * math.pi * 100 / perimeter(mask, 8) ** 2)


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_every_extractor_gives_finite_features_of_fixed_width(name):
    for size in (16, 28):
        features = handcrafted_features(_images(size=size), [name])
        assert features.dtype == np.float32 and np.isfinite(features).all()
        assert len(features) == 6
    constant = np.full((2, 1, 16, 16), 9, np.uint8)
    assert np.isfinite(handcrafted_features(constant, [name])).all()


def test_bands_are_concatenated_and_pool_matches_serial():
    images = _images(n=8, channels=3)
    serial = handcrafted_features(images, workers=1)
    one_band = handcrafted_features(images[:, :1], workers=1)
    assert serial.shape[1] == 3 * one_band.shape[1]
    np.testing.assert_allclose(serial[:, : one_band.shape[1]], one_band)
    np.testing.assert_allclose(handcrafted_features(images, workers=2), serial)


def test_bad_input_and_unknown_name_are_clear_errors():
    with pytest.raises(ConfigError, match="uint8 images"):
        handcrafted_features(np.zeros((2, 8, 8)))
    with pytest.raises(UnknownNameError, match="Did you mean 'hog'"):
        handcrafted_features(_images(), ["hogg"])
