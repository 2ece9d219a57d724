"""Models of the book: MLPs (and batched ensembles of them), small CNNs (2-D, and 1-D for MNIST-1D), a VGG-style
net, ResNet-20, and the least-norm linear models on products of inputs.

Names follow the papers: :func:`swiss_roll_net` is Huang et al.'s 6-layer net (3,614 parameters),
:func:`resnet20` the CIFAR ResNet that Huang et al. call "ResNet-18" (269,722 parameters).
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

SWISS_ROLL_WIDTHS = (23, 16, 26, 32, 28, 31)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def clones(model: nn.Module, n: int) -> list[nn.Module]:
    """``n`` independent copies of ``model`` (same weights): one initialization, several trainings."""
    return [copy.deepcopy(model) for _ in range(n)]


class MLP(nn.Sequential):
    """Fully connected ReLU net ``in_features → widths… → out_features``.

    Weights get Glorot (Xavier) uniform initialization and biases zeros, as in Huang et al.'s
    original TensorFlow code; ``bias=False`` gives a positively homogeneous net (Poggio et al.).
    """

    def __init__(self, in_features: int, widths: Sequence[int], out_features: int, bias: bool = True):
        sizes = [int(in_features), *[int(w) for w in widths], int(out_features)]
        if any(s < 1 for s in sizes):
            raise ValueError(f"layer sizes must be positive, got {sizes}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b, bias=bias))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)
        self.sizes, self.bias = tuple(sizes), bias
        for layer in self.linears:
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1))


def swiss_roll_net(out_features: int = 1, bias: bool = True) -> MLP:
    """Huang et al.'s swiss-roll net: 6 ReLU layers of widths 23, 16, 26, 32, 28, 31; one logit."""
    return MLP(2, SWISS_ROLL_WIDTHS, out_features, bias)


def minefield_net(depth: int = 5) -> MLP:
    """The net of Huang et al. Fig. 1: ``depth`` hidden ReLU layers of 25 units, two logits.

    Their code (``minefield/train_good_model.py``) uses five hidden layers, 2,727 parameters.
    """
    return MLP(2, (25,) * depth, 2)


def rings_net() -> MLP:
    """The net of Huang et al. Fig. 8: ``2 → 100 → 8×100 → 2``."""
    return MLP(2, (100,) * 9, 2)


def rescale(model: MLP, layer: int, factor: float) -> MLP:
    """A copy of a ReLU MLP computing the same function, with linear layer ``layer`` (weights and bias)
    multiplied by ``factor > 0`` and the next layer's weights divided by it (Dinh et al. 2017).

    ReLU is positively homogeneous, ``relu(a·z) = a·relu(z)`` for ``a > 0``, so the next layer sees the
    same input scaled by ``factor`` and undoes it; the predictions do not change, but every measure that
    looks at raw weights (norms, Hessian eigenvalues, sharpness in a box) can change as much as one likes.
    """
    linears = model.linears
    if not 0 <= layer < len(linears) - 1:
        raise ValueError(f"layer must be a linear layer followed by another, 0..{len(linears) - 2}, got {layer}")
    if not factor > 0:
        raise ValueError(f"factor must be positive (ReLU is only positively homogeneous), got {factor}")
    out = copy.deepcopy(model)
    first, second = out.linears[layer], out.linears[layer + 1]
    with torch.no_grad():
        first.weight.mul_(factor)
        if first.bias is not None:
            first.bias.mul_(factor)
        second.weight.div_(factor)
    return out


class MLPEnsemble(nn.Module):
    """``K`` MLPs of one architecture evaluated as one batched model (``torch.baddbmm``).

    Small nets on a CPU are dominated by per-operation overhead; stacking the members' weights
    along a leading dimension runs ``K`` nets for the price of a few. Outputs are ``[K, N, out]``.
    """

    def __init__(self, members: Sequence[MLP]):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        sizes, bias = members[0].sizes, members[0].bias
        for m in members:
            if not isinstance(m, MLP) or m.sizes != sizes or m.bias != bias:
                raise ValueError(f"every member must be an MLP with layer sizes {sizes} and bias={bias}")
        self.sizes, self.bias, self.size = sizes, bias, len(members)
        # Stored as [K, in, out] so the forward pass is X[K, N, in] @ W[K, in, out].
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.stack([m.linears[i].weight.detach().t() for m in members]).contiguous())
             for i in range(len(sizes) - 1)])
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.stack([m.linears[i].bias.detach() for m in members])[:, None, :].contiguous())
             for i in range(len(sizes) - 1)] if bias else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [K, N, in]: one input batch per member; anything else ([N, in], images [N, C, H, W]) is shared.
        per_member = x.ndim == 3 and x.shape[0] == self.size and x.shape[-1] == self.sizes[0]
        h = x if per_member else x.flatten(1).expand(self.size, -1, -1)
        last = len(self.weights) - 1
        for i, w in enumerate(self.weights):
            h = torch.baddbmm(self.biases[i], h, w) if self.bias else torch.bmm(h, w)
            if i < last:
                h = F.relu(h)
        return h

    def member(self, k: int) -> MLP:
        """Member ``k`` as a stand-alone :class:`MLP` (a copy)."""
        w = self.weights[0]
        net = MLP(self.sizes[0], self.sizes[1:-1], self.sizes[-1], self.bias).to(w.device, w.dtype)
        with torch.no_grad():
            for i, layer in enumerate(net.linears):
                layer.weight.copy_(self.weights[i][k].t())
                if self.bias:
                    layer.bias.copy_(self.biases[i][k, 0])
        return net

    def members(self) -> list[MLP]:
        return [self.member(k) for k in range(self.size)]


def _strided_convs(conv, in_channels: int, channels: Sequence[int], size: int, kernel_size: int,
                   bias: bool) -> tuple[nn.Sequential, int, int]:
    """ReLU convolutions (``conv``: ``nn.Conv1d`` or ``nn.Conv2d``) of stride 2 and padding ``k // 2``, one per
    entry of ``channels``; returns them with the last channel count and the side length they leave
    (halved, rounding up, at each layer)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    layers: list[nn.Module] = []
    c = in_channels
    for width in channels:
        layers += [conv(c, width, kernel_size, stride=2, padding=kernel_size // 2, bias=bias), nn.ReLU()]
        c, size = width, (size + 1) // 2
    return nn.Sequential(*layers), c, size


class SmallCNN(nn.Module):
    """A few ``k×k`` ReLU convolutions of stride 2 (padding ``k // 2``, no pooling), then one linear layer.

    With ``bias=False`` (and no BatchNorm) the net is positively homogeneous in each layer's
    weights, the setting of Poggio et al.'s normalized loss (see :func:`poggio_convnet`).
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64), in_channels: int = 1, num_classes: int = 10,
                 image_size: int = 28, bias: bool = True, kernel_size: int = 3):
        super().__init__()
        self.features, c, size = _strided_convs(nn.Conv2d, in_channels, channels, image_size, kernel_size, bias)
        self.classifier = nn.Linear(c * size * size, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def poggio_convnet(channels: int = 64, in_channels: int = 3, image_size: int = 32, num_classes: int = 10) -> SmallCNN:
    """Poggio et al.'s 3-layer net of their Fig. 2 (appendix B): two bias-free 5×5 convolutions of stride 2 and
    padding 2 with ``channels`` filters each and ReLUs, then a bias-free linear layer (64·8·8 → 10 on CIFAR-10).

    Their appendix L.1 describes the same net with 24 (or 34) filters and a bias in the first layer; the parameter
    counts it states (154,464 and 165,784) match neither description. We follow appendix B, bias-free throughout,
    so that the net is exactly homogeneous: 148,160 parameters with 64 filters on 32×32×3 inputs.
    """
    return SmallCNN((channels, channels), in_channels, num_classes, image_size, bias=False, kernel_size=5)


class SignalCNN(nn.Module):
    """A 1-D convolutional net for signals ``[N, length]`` (MNIST-1D): ReLU convolutions of stride 2 (padding
    ``k // 2``), then one linear layer; the signal's length halves (rounding up) at each convolution.

    Greydanus (2020) uses three such layers of 25 channels for MNIST-1D; the default here has 32.
    """

    def __init__(self, channels: Sequence[int] = (32, 32, 32), length: int = 40, num_classes: int = 10,
                 kernel_size: int = 5):
        super().__init__()
        self.features, c, size = _strided_convs(nn.Conv1d, 1, channels, int(length), kernel_size, bias=True)
        self.classifier = nn.Linear(c * size, num_classes)
        self.length = int(length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), 1, -1)
        if x.shape[-1] != self.length:
            raise ValueError(f"expected signals of length {self.length}, got {x.shape[-1]}")
        return self.classifier(self.features(x).flatten(1))


VGG_CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class VGG(nn.Module):
    """A VGG-style net (Simonyan & Zisserman 2015) for small images; ``width`` scales every layer.

    Huang et al. Table 1 trains VGG13 on CIFAR-10; ``VGG("vgg13", width=1/8)`` is a CPU-sized cousin.
    """

    def __init__(self, config: str | Sequence = "vgg13", in_channels: int = 3, num_classes: int = 10,
                 image_size: int = 32, width: float = 1.0, batch_norm: bool = True):
        super().__init__()
        cfg = VGG_CONFIGS[config] if isinstance(config, str) else tuple(config)
        layers: list[nn.Module] = []
        c, size = in_channels, image_size
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                size //= 2
            else:
                out = max(1, int(round(item * width)))
                layers += [nn.Conv2d(c, out, 3, padding=1, bias=not batch_norm)]
                layers += [nn.BatchNorm2d(out)] if batch_norm else []
                layers.append(nn.ReLU(inplace=True))
                c = out
        if size < 1:
            raise ValueError(f"{image_size}×{image_size} images are too small for {len([i for i in cfg if i == 'M'])} poolings")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class _BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm; the shortcut subsamples and zero-pads (He et al. option A)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class ResNet(nn.Module):
    """CIFAR ResNet (He et al. 2016, §4.2): three stages of ``n`` blocks, widths 16/32/64 by default."""

    def __init__(self, blocks_per_stage: int = 3, widths: Sequence[int] = (16, 32, 64), in_channels: int = 3,
                 num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        blocks, c = [], widths[0]
        for stage, w in enumerate(widths):
            for b in range(blocks_per_stage):
                blocks.append(_BasicBlock(c, w, 2 if stage > 0 and b == 0 else 1))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet20(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-20, the SVHN net of Huang et al. (their "ResNet-18"): 269,722 parameters for 10 classes."""
    return ResNet(3, (16, 32, 64), in_channels, num_classes)


class QuadraticFeatures(nn.Module):
    """Pixels and all pairwise products of pixels, after 2×2 average pooling (Huang et al. §2).

    ``[N, C, H, W] → [N, d + d(d+1)/2]`` with ``d = C·H·W/4``: each pixel of the 2×-downsampled image
    and the product of every pair of them (squares included). A linear model on these features has
    more parameters than there are training images in any of the book's subsets.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        if image_size % 2:
            raise ValueError(f"image_size must be even, got {image_size}")
        self.d = in_channels * (image_size // 2) ** 2
        rows, cols = torch.triu_indices(self.d, self.d)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.out_features = self.d + len(rows)

    @staticmethod
    def pixels(x: torch.Tensor) -> torch.Tensor:
        """The 2×-downsampled pixels ``[N, d]`` that the products are formed from."""
        return nn.functional.avg_pool2d(x, 2).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pixels(x)
        return torch.cat([p, p[:, self.rows] * p[:, self.cols]], 1)


def quadratic_linear_model(in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> nn.Sequential:
    """A linear classifier on :class:`QuadraticFeatures` (Huang et al.'s linear model of §2 and Fig. 2)."""
    features = QuadraticFeatures(in_channels, image_size)
    model = nn.Sequential(features, nn.Linear(features.out_features, num_classes))
    nn.init.zeros_(model[1].weight)
    nn.init.zeros_(model[1].bias)
    return model


def _quadratic_kernel(P: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """``⟨φ(p), φ(q)⟩`` for ``φ(p) = [p, (p_a p_b)_{a≤b}]``: ``p·q + ½((p·q)² + Σ_a p_a² q_a²)``."""
    G = P @ Q.T
    return G + 0.5 * (G ** 2 + (P ** 2) @ (Q ** 2).T)


def min_norm_quadratic_model(X: torch.Tensor, y: torch.Tensor, num_classes: int = 10) -> nn.Sequential:
    """The linear model on :class:`QuadraticFeatures` that fits one-hot targets exactly with the least norm.

    With more features than training images, ``F W = Y`` has many solutions; gradient descent on the
    squared loss started from ``W = 0`` converges to the one of least Frobenius norm,
    ``W = Fᵀ (F Fᵀ)⁻¹ Y``. It is computed here in closed form, in float64, through the kernel
    ``F Fᵀ`` (an ``N × N`` matrix, cheap to form from the pooled pixels) instead of by thousands of
    gradient steps. Every training image is then classified correctly (unless two coincide).
    """
    if X.ndim != 4 or X.shape[-1] != X.shape[-2]:
        raise ValueError(f"expected square images [N, C, H, W], got shape {tuple(X.shape)}")
    model = quadratic_linear_model(X.shape[1], X.shape[-1], num_classes)
    P = QuadraticFeatures.pixels(X.double())
    Y = nn.functional.one_hot(y, num_classes).double()
    A = torch.linalg.solve(_quadratic_kernel(P, P), Y)  # [N, classes]
    with torch.no_grad():
        # W = Fᵀ A, accumulated over chunks of images so F never exists whole
        W = sum(model[0](X[i: i + 512].double()).T @ A[i: i + 512] for i in range(0, len(X), 512))
        model[1].weight.copy_(W.T.float())
    return model


def monomial_count(d: int, degree: int) -> int:
    """How many monomials of degree 1 to ``degree`` there are in ``d`` inputs: ``C(d + degree, degree) − 1``."""
    return math.comb(d + degree, degree) - 1


class MonomialFeatures(nn.Module):
    """Every monomial of degree 1 to ``degree`` in the ``d`` inputs: ``[N, d] → [N, C(d + degree, degree) − 1]``.

    The same features, in the same order, as scikit-learn's ``PolynomialFeatures(degree, include_bias=False)``;
    for MNIST-1D's 40 samples and degree 3 that is 12,340 features. Products are formed from index tables, so
    a linear model on them is an ``nn.Module`` like any other.
    """

    def __init__(self, d: int, degree: int = 3):
        super().__init__()
        if d < 1 or degree < 1:
            raise ValueError(f"need at least one input and degree 1 or more, got d={d}, degree={degree}")
        self.d, self.degree = int(d), int(degree)
        for k in range(2, self.degree + 1):
            idx = torch.combinations(torch.arange(self.d), k, with_replacement=True)
            self.register_buffer(f"index{k}", idx, persistent=False)
        self.out_features = monomial_count(self.d, self.degree)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.d:
            raise ValueError(f"expected {self.d} inputs, got {x.shape[1]}")
        parts = [x]
        for k in range(2, self.degree + 1):
            idx = getattr(self, f"index{k}")
            parts.append(x[:, idx].prod(-1))
        return torch.cat(parts, 1)


def min_norm_polynomial_model(X: torch.Tensor, y: torch.Tensor, degree: int = 3,
                              num_classes: int = 10) -> nn.Sequential:
    """The linear model on :class:`MonomialFeatures` of ``X`` (flattened) that fits one-hot targets with the
    least norm, ``W = Fᵀ (F Fᵀ)⁻¹ Y``, computed in float64.

    It needs more features than training examples (otherwise no weights fit every target, and this raises):
    degree 3 on MNIST-1D's 40 samples gives 12,340 features for its 4,000 training signals.
    """
    d = X[0].numel()
    features = MonomialFeatures(d, degree)
    if features.out_features < len(X):
        raise ValueError(f"{features.out_features} features of degree ≤ {degree} cannot fit {len(X)} examples "
                         f"exactly: raise the degree or use fewer examples")
    model = nn.Sequential(features, nn.Linear(features.out_features, num_classes, bias=False))
    F_ = features(X.double())
    Y = nn.functional.one_hot(y, num_classes).double()
    with torch.no_grad():
        model[1].weight.copy_((F_.T @ torch.linalg.solve(F_ @ F_.T, Y)).T.float())
    return model


INITIALIZATIONS = ("default", "he_normal", "glorot_uniform", "normal", "uniform")


def initialize(model: nn.Module, scheme: str = "he_normal", scale: float = 0.1, seed: int | None = None) -> nn.Module:
    """Re-initialize every linear and convolutional weight (biases to zero), in place; returns the model.

    ``"he_normal"``: ``N(0, 2/fan_in)`` (He et al. 2015); ``"glorot_uniform"``: Glorot & Bengio (2010);
    ``"normal"``: ``N(0, scale²)``; ``"uniform"``: ``U[0, scale]`` — all four are in Wu et al.'s Table 2
    (with ``scale`` 0.1 or 1); ``"default"``: PyTorch's own initialization of each layer.
    """
    if scheme not in INITIALIZATIONS:
        raise ValueError(f"unknown initialization {scheme!r}: choose one of {', '.join(INITIALIZATIONS)}")
    if seed is not None:
        torch.manual_seed(seed)
    for m in model.modules():
        if not isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            continue
        if scheme == "default":
            m.reset_parameters()
            continue
        with torch.no_grad():
            if scheme == "he_normal":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif scheme == "glorot_uniform":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "normal":
                nn.init.normal_(m.weight, 0.0, scale)
            else:
                nn.init.uniform_(m.weight, 0.0, scale)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def describe_initialization(scheme: str, scale: float = 0.1) -> str:
    """A label for a scheme of :func:`initialize`, in the notation of Wu et al.'s Table 2."""
    labels = {"default": "PyTorch default", "he_normal": "N(0, 2/fan_in)", "glorot_uniform": "Glorot uniform",
              "normal": f"N(0, {scale:g}²)", "uniform": f"U[0, {scale:g}]"}
    if scheme not in labels:
        raise ValueError(f"unknown initialization {scheme!r}: choose one of {', '.join(INITIALIZATIONS)}")
    return labels[scheme]
