"""Where the network looks: Grad-CAM, Grad-CAM++, gradient saliency and occlusion behind one
call, `explainer(images, targets) -> [B, H, W]` in [0, 1] (STYLE.md rule 7).

Grad-CAM: Selvaraju et al., ICCV 2017. Grad-CAM++: Chattopadhay et al., WACV 2018 (its
exponential-score weights). Saliency: Simonyan et al., ICLR workshop 2014. Occlusion: Zeiler &
Fergus, ECCV 2014. A new CAM variant subclasses GradCAM and overrides `channel_weights` only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.hooks import hooks_attached
from cnnlab.registry import Registry


class Explainer:
    """images: normalised float [B, C, H, W] on the model's device; targets: class indices [B].

    Subclasses implement `attribute` (non-negative importance [B, H, W]); `__call__` scales each
    map by its maximum so it lies in [0, 1] (an all-zero map stays zero).
    """

    name = "explainer"

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise CnnlabError(f"Expected images [B, C, H, W], got shape {tuple(images.shape)}.")
        targets = torch.as_tensor(targets, dtype=torch.long, device=images.device).reshape(-1)
        if len(targets) != len(images):
            raise CnnlabError(
                f"Got {len(images)} images but {len(targets)} targets; give one class per image."
            )
        self.model.eval()
        return normalise_maps(self.attribute(images.float(), targets).detach())

    def attribute(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


EXPLAINERS: Registry[type[Explainer]] = Registry("explainer")


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """[B, H, W] -> each map divided by its maximum, clamped to [0, 1]; NaN becomes 0."""
    maps = torch.nan_to_num(maps.float(), nan=0.0).clamp(min=0.0)
    peak = maps.flatten(1).max(dim=1).values.clamp(min=1e-12)[:, None, None]
    return (maps / peak).clamp(0.0, 1.0)


def target_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The logit of each image's target class [B]."""
    return logits.gather(1, targets[:, None]).squeeze(1)


@EXPLAINERS.register("gradcam")
class GradCAM(Explainer):
    """ReLU(sum_k w_k A_k) of a layer's maps A [B, K, h, w], upsampled bilinearly to the image;
    w_k is the spatial mean of d score / d A_k. `layer` defaults to the deepest stage output."""

    name = "gradcam"

    def __init__(self, model: nn.Module, layer: str | None = None) -> None:
        super().__init__(model)
        if layer is None and not getattr(model, "feature_layers", ()):
            raise CnnlabError("The model names no feature_layers; give Grad-CAM a layer by name.")
        self.layer = layer or model.feature_layers[-1]

    def channel_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        """[B, K, h, w] maps and their gradients -> one weight per map [B, K]."""
        return gradients.mean(dim=(2, 3))

    def attribute(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        activations, gradients = layer_gradients(self.model, self.layer, images, targets)
        weights = self.channel_weights(activations, gradients)  # [B, K]
        cam = torch.relu((weights[:, :, None, None] * activations).sum(dim=1, keepdim=True))
        if cam.shape[-2:] != images.shape[-2:]:
            cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return cam[:, 0]


@EXPLAINERS.register("gradcam++")
class GradCAMPlusPlus(GradCAM):
    """Grad-CAM with pixel-weighted gradients: w_k = sum_ij alpha_ij ReLU(g_ij), where
    alpha_ij = g^2 / (2 g^2 + sum_ab A_ab g^3) (the paper's eq. 19 with an exponential score)."""

    name = "gradcam++"

    def channel_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        g2 = gradients * gradients
        g3 = g2 * gradients
        sums = activations.sum(dim=(2, 3), keepdim=True)  # [B, K, 1, 1]
        denominator = 2.0 * g2 + sums * g3
        safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        alpha = torch.where(denominator != 0, g2 / safe, torch.zeros_like(g2))
        return (alpha * torch.relu(gradients)).sum(dim=(2, 3))


@EXPLAINERS.register("saliency")
class Saliency(Explainer):
    """|d score / d pixel|, the largest over the bands."""

    name = "saliency"

    def attribute(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = images.detach().requires_grad_(True)
        with torch.enable_grad():
            scores = target_scores(self.model(x), targets)
            (gradient,) = torch.autograd.grad(scores.sum(), x)
        return gradient.abs().amax(dim=1)


@EXPLAINERS.register("occlusion")
class Occlusion(Explainer):
    """The drop in the target's probability when a square patch is set to 0 (the training mean
    after normalisation), averaged over the patches that cover each pixel; rises are clipped."""

    name = "occlusion"

    def __init__(
        self,
        model: nn.Module,
        patch: int | None = None,
        stride: int | None = None,
        batch_size: int = 512,
    ) -> None:
        super().__init__(model)
        self.patch, self.stride, self.batch_size = patch, stride, batch_size

    def attribute(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _, _, height, width = images.shape
        patch = self.patch or max(2, min(height, width) // 4)
        stride = self.stride or max(1, patch // 2)
        windows = [
            (t, s) for t in _starts(height, patch, stride) for s in _starts(width, patch, stride)
        ]
        cover = torch.zeros(len(windows), height, width, device=images.device)  # [P, H, W]
        for index, (top, left) in enumerate(windows):
            cover[index, top : top + patch, left : left + patch] = 1.0
        keep = (1.0 - cover)[:, None]  # [P, 1, H, W]: zero inside the patch
        per_batch = max(1, self.batch_size // len(windows))  # images occluded per forward pass
        maps = []
        with torch.no_grad():
            for start in range(0, len(images), per_batch):
                x = images[start : start + per_batch]  # [b, C, H, W]
                target = targets[start : start + per_batch]
                occluded = (x[:, None] * keep[None]).flatten(0, 1)  # [b * P, C, H, W]
                batch = torch.cat([x, occluded])
                probabilities = torch.softmax(self.model(batch).float(), dim=1)
                reference = probabilities[: len(x)].gather(1, target[:, None])  # [b, 1]
                occluded_p = probabilities[len(x) :].view(len(x), len(windows), -1)
                occluded_p = occluded_p.gather(2, target[:, None, None].expand(-1, len(windows), 1))
                drops = reference - occluded_p[:, :, 0]  # [b, P]
                summed = torch.einsum("bp,phw->bhw", drops, cover)
                maps.append(summed / cover.sum(0).clamp(min=1.0))
        return torch.relu(torch.cat(maps))


def _starts(length: int, patch: int, stride: int) -> list[int]:
    """Window starts along one axis such that the last window touches the far edge."""
    if patch >= length:
        return [0]
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def layer_gradients(
    model: nn.Module, layer: str, images: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's output [B, K, h, w] and the gradient of the target scores with respect to it."""
    captured: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise CnnlabError(
                f"Grad-CAM needs a layer with spatial maps [B, K, h, w]; {layer!r} gives {shape}. "
                "Choose a convolutional stage (one of the model's feature_layers)."
            )
        captured["maps"] = output
        return output.clone()  # later in-place ops (ReLU(inplace=True)) change the clone only

    x = images.detach().requires_grad_(True)  # so the maps need gradients even if weights don't
    with torch.enable_grad(), hooks_attached(model, forward={layer: hook}):
        scores = target_scores(model(x), targets)
    if "maps" not in captured:
        raise CnnlabError(f"Layer {layer!r} did not run in the forward pass.")
    (gradients,) = torch.autograd.grad(scores.sum(), captured["maps"])
    return captured["maps"].detach(), gradients.detach()


def build_explainer(name: str, model: nn.Module, layer: str | None = None) -> Explainer:
    """An explainer from the registry; `layer` is used by the CAM family and ignored otherwise."""
    cls = EXPLAINERS.get(name)
    if issubclass(cls, GradCAM):
        return cls(model, layer)
    return cls(model)


def object_share(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of each map's importance [B, H, W] that falls inside the object masks [B, H, W];
    NaN for an all-zero map. Compare with the mask's area: a map blind to the object scores it."""
    inside = (maps * masks.float()).flatten(1).sum(1)
    total = maps.flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=1e-12), torch.nan)
