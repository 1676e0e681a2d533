"""Explain: hooks that always come off, exact Grad-CAM maps, separability and alignment oracles,
neuron statistics against scikit-learn, and `cnnlab explain` end to end on a tiny digits run."""

import json
import math

import pytest
import torch
from torch import nn

from cnnlab.cli import main
from cnnlab.data.loader import Normalizer
from cnnlab.errors import CnnlabError
from cnnlab.explain import hooks
from cnnlab.explain.cam import (
    EXPLAINERS,
    GradCAM,
    GradCAMPlusPlus,
    Saliency,
    build_explainer,
    object_share,
)
from cnnlab.explain.features import collect_features, global_vector, pooled_grid, sample_indices
from cnnlab.explain.galleries import overlay
from cnnlab.explain.neurons import (
    correlation_distances,
    neuron_map,
    roc_auc,
    smacof,
    specialisation,
)
from cnnlab.explain.projection import pca, procrustes_align, project_layers
from cnnlab.explain.separability import chance_levels, depth_trend, separability
from cnnlab.models.base import ClassifierModel
from cnnlab.runtime.predict import StepSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TwoMaps(ClassifierModel):
    """A 1x1 conv making maps A0 = x and A1 = -x, global average pooling and a linear layer with
    hand-set weights W: score_c = W[c, 0] mean(A0) + W[c, 1] mean(A1). Grad-CAM's weights are then
    W[c, k] / (H W) and its map ReLU((W[c, 0] - W[c, 1]) x) / (H W), known exactly."""

    feature_layers = ("features",)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head.add_module("fc", nn.Linear(2, 2, bias=False))
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.head.fc.weight.copy_(torch.tensor([[2.0, 1.0], [-1.0, 3.0]]))


IMAGE = torch.tensor(
    [[1.0, -2.0, 0.5, 0.0], [3.0, -1.0, 2.0, -0.5], [0.0, 4.0, -3.0, 1.0], [-1.0, 0.25, 0.0, 2.0]]
)


def test_gradcam_golden_map_on_hand_set_weights():
    model = TwoMaps()
    x = IMAGE.view(1, 1, 4, 4).repeat(2, 1, 1, 1)
    maps = GradCAM(model)(x, torch.tensor([0, 1]))
    # class 0: (2 - 1) x / 16 -> ReLU(x) / max; class 1: (-1 - 3) x / 16 -> ReLU(-x) / max
    torch.testing.assert_close(maps[0], IMAGE.clamp(min=0) / IMAGE.clamp(min=0).max())
    torch.testing.assert_close(maps[1], (-IMAGE).clamp(min=0) / (-IMAGE).clamp(min=0).max())
    assert hooks.count_hooks(model) == 0


def test_gradcam_plus_plus_golden_weights():
    model = TwoMaps()
    x = IMAGE.view(1, 1, 4, 4)
    gradients = [2.0 / 16, 1.0 / 16]  # d score_0 / d A_k, the same at every pixel
    sums = [float(IMAGE.sum()), -float(IMAGE.sum())]
    weights = []
    for g, s in zip(gradients, sums, strict=True):
        alpha = g**2 / (2 * g**2 + s * g**3)
        weights.append(16 * alpha * max(g, 0.0))
    expected = (weights[0] * IMAGE - weights[1] * IMAGE).clamp(min=0)
    maps = GradCAMPlusPlus(model)(x, torch.tensor([0]))
    torch.testing.assert_close(maps[0], expected / expected.max())


def test_saliency_of_a_linear_network_is_uniform():
    model = TwoMaps()
    maps = Saliency(model)(IMAGE.view(1, 1, 4, 4), torch.tensor([1]))
    torch.testing.assert_close(maps, torch.ones(1, 4, 4))


@pytest.mark.parametrize("name", EXPLAINERS.names())
def test_every_explainer_has_the_one_call_shape(name):
    torch.manual_seed(0)
    model = TwoMaps()
    images = torch.randn(3, 1, 8, 8)
    maps = build_explainer(name, model)(images, torch.tensor([0, 1, 0]))
    assert maps.shape == (3, 8, 8)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    assert hooks.count_hooks(model) == 0


def test_a_new_cam_variant_overrides_one_method():
    class Uniform(GradCAM):
        def channel_weights(self, activations, gradients):
            return torch.tensor([[1.0, 0.0]])

    maps = Uniform(TwoMaps())(IMAGE.view(1, 1, 4, 4), torch.tensor([0]))
    torch.testing.assert_close(maps[0], IMAGE.clamp(min=0) / IMAGE.clamp(min=0).max())


def test_hooks_removed_after_success_and_after_errors():
    model = TwoMaps()
    seen = []
    with hooks.hooks_attached(model, forward={"features": lambda m, i, o: seen.append(o.shape)}):
        model(torch.zeros(1, 1, 4, 4))
        assert hooks.count_hooks(model) == 1
    assert seen and hooks.count_hooks(model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with hooks.hooks_attached(model, forward={"features": lambda m, i, o: None}):
            raise RuntimeError("boom")
    assert hooks.count_hooks(model) == 0
    # The second name is a typo: the first hook, already attached, must come off too.
    with pytest.raises(CnnlabError, match="Did you mean 'features'"):
        with hooks.hooks_attached(model, forward={"features": print, "featurs": print}):
            pass
    assert hooks.count_hooks(model) == 0
    # A hook that raises in the middle of a forward pass (Grad-CAM on a vector layer).
    with pytest.raises(CnnlabError, match="spatial maps"):
        GradCAM(model, layer="head.fc")(torch.zeros(1, 1, 4, 4), torch.tensor([0]))
    assert hooks.count_hooks(model) == 0


def test_classifier_and_first_conv_found_by_running_the_model():
    model = TwoMaps()
    x = torch.zeros(1, 1, 4, 4)
    assert hooks.classifier_name(model, x) == "head.fc"
    assert hooks.first_conv_name(model, x) == "features"
    assert hooks.count_hooks(model) == 0


def test_collect_features_matches_the_model_and_removes_its_hooks():
    model = TwoMaps()
    images = torch.randint(0, 256, (7, 1, 4, 4), dtype=torch.uint8)
    settings = StepSettings(normalizer=Normalizer((0.5,), (0.25,)))
    layers, logits = collect_features(
        model, images, ["input", "features", "last_hidden"], settings, batch_size=3
    )
    x = settings.normalizer(images)
    torch.testing.assert_close(layers[0].features, x.flatten(1))
    torch.testing.assert_close(layers[1].features, model.features(x).flatten(1))
    torch.testing.assert_close(layers[2].features, model.features(x).mean(dim=(2, 3)))
    torch.testing.assert_close(logits, model(x))
    assert layers[1].channel_means.shape == (7, 2)
    assert hooks.count_hooks(model) == 0
    with pytest.raises(CnnlabError):
        collect_features(model, images, ["input", "head.nothing"], settings)
    assert hooks.count_hooks(model) == 0


def test_global_vectors_stay_bounded():
    assert pooled_grid(16, 28, 28, 2048) == (11, 11)
    assert pooled_grid(2, 4, 4, 2048) == (4, 4)
    assert pooled_grid(4096, 7, 7, 2048) == (1, 1)
    vector, how = global_vector(torch.randn(2, 16, 28, 28), "flatten", 2048)
    assert vector.shape == (2, 16 * 11 * 11) and "11x11" in how
    vector, _ = global_vector(torch.randn(2, 16, 28, 28), "gap", 2048)
    assert vector.shape == (2, 16)
    picked = sample_indices(100, 10, seed=3)
    assert len(picked) == 10 and picked.equal(sample_indices(100, 10, seed=3))
    assert picked.equal(picked.sort().values)
    assert sample_indices(5, 10, seed=0).tolist() == [0, 1, 2, 3, 4]


def _blobs(spread: float, per_class: int = 60, classes: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(classes, 10) * 10.0
    labels = torch.arange(classes).repeat_interleave(per_class)
    points = centres[labels] + spread * torch.randn(len(labels), 10, generator=generator)
    return points, labels


def test_separability_on_blobs_and_shuffled_labels():
    points, labels = _blobs(spread=0.5)
    scores = separability(points, labels, k=5, block_size=50)
    assert scores["silhouette"] > 0.8
    assert scores["knn_accuracy"] == 1.0 and scores["neighbourhood_hit"] == 1.0
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    chance = chance_levels(shuffled, k=5)
    scores = separability(points, shuffled, k=5)
    assert abs(scores["silhouette"]) < 0.05
    assert abs(scores["knn_accuracy"] - chance["knn_accuracy"]) < 0.12
    assert abs(scores["neighbourhood_hit"] - chance["neighbourhood_hit"]) < 0.08


def test_separability_agrees_with_scikit_learn():
    from sklearn.metrics import silhouette_score
    from sklearn.neighbors import NearestNeighbors

    points, labels = _blobs(spread=6.0, per_class=40, seed=2)
    scores = separability(points, labels, k=4, block_size=33)
    assert math.isclose(scores["silhouette"], silhouette_score(points, labels), abs_tol=1e-5)
    _, neighbours = NearestNeighbors(n_neighbors=5).fit(points).kneighbors(points)
    same = labels[torch.from_numpy(neighbours[:, 1:])] == labels[:, None]
    assert math.isclose(scores["neighbourhood_hit"], same.double().mean().item(), rel_tol=1e-9)


def test_depth_trend_says_what_happened():
    names = ["input", "a", "b"]
    assert depth_trend([0.1, 0.2, 0.3], names)["grows_at_every_step"]
    mixed = depth_trend([0.1, 0.4, 0.3], names)
    assert mixed["grows_overall"] and not mixed["grows_at_every_step"]
    assert mixed["drops"][0]["from"] == "a" and "falls at a -> b" in mixed["verdict"]
    assert not depth_trend([0.5, 0.4, 0.3], names)["grows_overall"]
    # a small fall is a fall: never "grows at every step" when a value went down
    slight = depth_trend([0.1, 0.1672, 0.1659], names)
    assert not slight["grows_at_every_step"] and slight["grows_overall"]
    assert slight["drops"] == [{"from": "a", "to": "b", "change": -0.0013}]
    assert (
        "not at every step" in slight["verdict"] and "falls at a -> b (-0.001)" in slight["verdict"]
    )


def test_procrustes_undoes_rotation_reflection_scale_and_shift():
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(50, 2, generator=generator)
    angle = torch.tensor(0.7)
    rotation = torch.stack(
        [torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])]
    )
    moved = 3.0 * reference @ rotation @ torch.diag(torch.tensor([1.0, -1.0])) + 5.0
    torch.testing.assert_close(procrustes_align(moved, reference), reference, atol=1e-5, rtol=0)


def test_successive_layers_are_aligned():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(80, 6, generator=generator) * torch.tensor([5.0, 3, 1, 1, 1, 1])
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator))  # a rotated copy of the space
    first, second = project_layers([features, features @ q], "pca", seed=0)
    torch.testing.assert_close(second, first, atol=1e-4, rtol=0)


def test_tsne_starts_from_the_previous_layer():
    points, labels = _blobs(spread=1.0, per_class=30, classes=3)
    first, second = project_layers([points, points], "tsne", seed=0)
    spread = first.std()
    assert (second - first).norm(dim=1).mean() < 0.2 * spread
    assert separability(second, labels)["knn_accuracy"] == 1.0


def test_pca_is_deterministic_and_pads_small_inputs():
    x = torch.randn(30, 3)
    assert pca(x, 2).equal(pca(x, 2)) and pca(x, 5).shape == (30, 5)


def test_roc_auc_with_ties_matches_scikit_learn():
    from sklearn.metrics import roc_auc_score

    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (120, 3), generator=generator).float()
    positive = torch.rand(120, generator=generator) > 0.7
    expected = [roc_auc_score(positive.numpy(), scores[:, j].numpy()) for j in range(3)]
    torch.testing.assert_close(roc_auc(scores, positive), torch.tensor(expected))


def test_smacof_recovers_a_planar_layout_and_maps_specialised_neurons():
    points = torch.tensor([[0.0, 0], [1, 0], [0, 2], [3, 1], [2, 2]])
    positions, stress = smacof(torch.cdist(points, points))
    assert stress < 1e-3
    torch.testing.assert_close(
        torch.cdist(positions, positions), torch.cdist(points, points), atol=1e-3, rtol=0
    )
    labels = torch.arange(3).repeat(40)
    activations = torch.rand(120, 5, generator=torch.Generator().manual_seed(0))
    activations[:, 0] += 5.0 * (labels == 2)  # neuron 0 detects class 2
    activations[:, 4] = 1.0  # a dead neuron
    distances, dead = correlation_distances(activations)
    assert dead.tolist() == [False, False, False, False, True] and distances[4, 0] == 1.0
    mapped = neuron_map("layer", activations, labels, 3)
    assert mapped.auc[2, 0] == 1.0
    summary = specialisation(mapped, ["a", "b", "c"])
    assert summary["dead_neurons"] == 1 and summary["best_class"][0] == "c"
    assert summary["specialised_per_class"]["c"] >= 1


def test_overlay_and_object_share():
    gray = torch.full((1, 4, 4), 100, dtype=torch.uint8)
    colour = torch.full((3, 4, 4), 100, dtype=torch.uint8)
    heat = torch.zeros(4, 4)
    heat[0, 0] = 1.0
    for image in (gray, colour):
        blended = overlay(image, heat)
        assert blended.shape == (3, 4, 4)
        torch.testing.assert_close(blended[:, 1, 1], torch.full((3,), 100 / 255))
        assert not torch.allclose(blended[:, 0, 0], torch.full((3,), 100 / 255))
    maps = torch.tensor([[[1.0, 1.0], [0.0, 2.0]]])
    mask = torch.tensor([[[True, False], [False, True]]])
    torch.testing.assert_close(object_share(maps, mask), torch.tensor([0.75]))
    assert object_share(torch.zeros(1, 2, 2), mask).isnan().all()


def test_gallery_rows_follow_the_confusion_matrix():
    from sklearn.metrics import confusion_matrix as sklearn_confusion

    from cnnlab.explain.cam_reports import ScoredImages, select_gallery_rows

    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, 1, 0, 1, 0, 0, 2, 1])
    logits = 5.0 * nn.functional.one_hot(predictions, 3).float()
    logits[:, 0] += torch.linspace(0, 1, 10)  # distinct losses, same predictions
    images = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
    ids = [f"folder/{i}.png" for i in range(10)]
    scored = ScoredImages.from_logits(images, labels, ids, ["a", "b", "c"], logits)
    chosen = select_gallery_rows(scored, per_cell=2, seed=0)

    counts = sklearn_confusion(labels.numpy(), predictions.numpy(), labels=range(3))
    assert chosen.counts.tolist() == counts.tolist()
    # Off-diagonal cells by count, ties broken by position: (0,1) 2, (2,0) 2, (1,0) 1, (2,1) 1.
    assert list(chosen.confused) == [(0, 1), (2, 0), (1, 0), (2, 1)]
    for (true, predicted), rows in chosen.confused.items():
        assert len(rows) == min(2, counts[true, predicted]) and rows == sorted(rows)
        assert all(labels[r] == true and predictions[r] == predicted for r in rows)
    assert chosen.correct[0] == [0] and chosen.correct[2] == [8] and chosen.correct[1] == [3, 5]
    assert chosen.first_correct == [0, 3, 8]
    assert chosen.top_losses == scored.losses.argsort(descending=True).tolist()
    assert chosen.all_rows == list(range(10))
    assert scored.entry(4) | {"loss": 0} == {
        "row": 4,
        "sample_id": "folder/4.png",
        "true": "b",
        "predicted": "a",
        "confidence": round(float(logits[4].softmax(0)[0]), 4),
        "loss": 0,
    }
    assert scored.short_id(4) == "4.png"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.run import train

    run = tmp_path_factory.mktemp("explain") / "run"
    config = TrainConfig(
        data="digits",
        model="small-cnn",
        download=False,
        epochs=2,
        batch_size=64,
        learning_rate=0.1,
        val_fraction=0.2,
        model_options={"widths": [8, 16], "depth": 1},
    )
    train(config, run, show_progress=False)
    return run


def test_cli_explain_end_to_end_with_masks(digits_run, tmp_path, capsys):
    from cnnlab.data import save_image_file

    record = json.loads((digits_run / "dataset.json").read_text())
    test = record["splits"]["test"]
    masks = tmp_path / "masks"
    for index in test["indices"]:  # every digit's mask is the whole image: all importance inside
        save_image_file(
            torch.full((1, 8, 8), 255, dtype=torch.uint8), masks / test["from"] / f"{index}.png"
        )
    code = main(
        [
            "explain",
            str(digits_run),
            "--method",
            "pca",
            "--max-points",
            "120",
            "--untrained",
            "--per-cell",
            "1",
            "--cam-methods",
            "gradcam,occlusion",
            "--masks",
            str(masks),
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    out = digits_run / "explain" / "test"
    layers = ["input", "features.stage1", "features.stage2", "last_hidden"]
    assert summary["layers"] == layers and summary["points"] == 120
    for index, layer in enumerate(layers):
        for state in ("trained", "untrained"):
            stem = out / "projections" / "pca" / f"{index:02d}-{layer}-{state}"
            assert stem.parent.joinpath(stem.name + ".png").is_file()
            coordinates = json.loads(stem.parent.joinpath(stem.name + ".json").read_text())
            assert len(coordinates["x"]) == 120 and len(coordinates["sample_ids"]) == 120
        assert (out / "activations" / f"{index:02d}-{layer}.png").is_file()
    for name in (
        "projections-pca.png",
        "separability.png",
        "separability.json",
        "summary.json",
        "neurons/last_hidden-trained.png",
        "neurons/last_hidden-untrained.json",
        "neurons/last_hidden-trained-top-images.png",
        "cam/methods.png",
        "cam/galleries.json",
        "cam/object-share.png",
    ):
        assert (out / name).is_file(), name
    for method in ("gradcam", "occlusion"):  # the galleries of every method share this code
        assert (out / "cam" / f"{method}-correct.png").is_file()
        assert (out / "cam" / f"{method}-top-losses.png").is_file()
    assert (digits_run / "explain" / "filters-trained.png").is_file()
    separation = json.loads((out / "separability.json").read_text())
    assert set(separation["metrics"]) == {"trained", "untrained"}
    assert separation["statement"].startswith("The lecture slides' claim")
    shares = summary["cam"]["object_share"]
    assert shares["images_with_masks"] == 120
    assert all(m["share_inside"] == pytest.approx(1.0) for m in shares["methods"].values())
    assert summary["neurons"]["last_hidden"]["trained"]["neurons"] == 16


def test_cli_explain_parts_and_clear_errors(digits_run, capsys):
    args = ["explain", str(digits_run), "--method", "pca", "--max-points", "90", "--quiet"]
    assert main([*args, "--what", "separability,filters", "--layers", "input,last_hidden"]) == 0
    out = capsys.readouterr().out
    assert "The lecture slides' claim" in out and "written:" in out
    summary = json.loads((digits_run / "explain" / "test" / "summary.json").read_text())
    assert summary["layers"] == ["input", "last_hidden"] and "cam" not in summary
    assert main([*args, "--what", "everything"]) == 2
    assert "--what has unknown part" in capsys.readouterr().err
    assert main([*args, "--layers", "features.stag1"]) == 2
    assert "Did you mean 'features.stage1'" in capsys.readouterr().err
    assert main([*args, "--what", "cam", "--masks", "/nonexistent"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_neuron_panels_by_name_or_index():
    from cnnlab.explain.space_reports import panel_classes

    names = [f"c{i}" for i in range(25)]
    assert panel_classes((), names) == list(range(20))
    assert panel_classes(("c3", "7"), names) == [3, 7]
    with pytest.raises(CnnlabError, match="not a class of this run"):
        panel_classes(("dog",), names)


def test_occlusion_equals_a_patch_by_patch_loop():
    from cnnlab.explain.cam import Occlusion

    torch.manual_seed(0)
    model = TwoMaps()
    images = torch.randn(3, 1, 4, 4)
    targets = torch.tensor([0, 1, 1])
    maps = Occlusion(model, patch=2, stride=2, batch_size=8)(images, targets)  # 2 images a pass
    for image, target, got in zip(images, targets, maps, strict=True):
        base = torch.softmax(model(image[None]), 1)[0, target]
        expected = torch.zeros(4, 4)
        for top in (0, 2):
            for left in (0, 2):
                occluded = image.clone()
                occluded[:, top : top + 2, left : left + 2] = 0.0
                drop = base - torch.softmax(model(occluded[None]), 1)[0, target]
                expected[top : top + 2, left : left + 2] = drop
        expected = expected.clamp(min=0)
        torch.testing.assert_close(got, expected / expected.max().clamp(min=1e-12))


def _small_models(max_parameters: int = 500_000) -> list[str]:
    """Registered models small enough to run here in well under a second each (bigger ones use
    the same contract and code paths; the benchmark and test_models cover them)."""
    from cnnlab.models import MODELS, ModelSpec, build_model, model_min_image_size

    names = []
    for name in MODELS.names():
        size = max(32, model_min_image_size(name))
        with torch.device("meta"):
            model = build_model(ModelSpec(name, 3, 10, (size, size)))
        if sum(p.numel() for p in model.parameters()) <= max_parameters:
            names.append(name)
    return names


@pytest.mark.parametrize("name", _small_models())
def test_explain_parts_on_registered_models(name):
    from cnnlab.explain.cam_reports import deepest_spatial_layer
    from cnnlab.explain.features import default_layers
    from cnnlab.models import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec(name, 3, 10, (32, 32))).eval()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    settings = StepSettings(normalizer=Normalizer((0.5,) * 3, (0.25,) * 3))
    layers, logits = collect_features(model, images, default_layers(model), settings, batch_size=2)
    assert logits.shape == (3, 10) and all(len(layer.features) == 3 for layer in layers)
    x = settings.normalizer(images[:2])
    layer = deepest_spatial_layer(model, x)
    for method in EXPLAINERS.names():
        maps = build_explainer(method, model, layer)(x, torch.tensor([0, 1]))
        assert maps.shape == (2, 32, 32) and not maps.isnan().any()
    assert hooks.first_conv_name(model, x) is not None
    assert hooks.count_hooks(model) == 0
