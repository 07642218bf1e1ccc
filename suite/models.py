"""Model registry: the pruning papers' architectures, built for a dataset's input shape."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from suite.config import ModelConfig
from suite.data import DataSpec
from suite.errors import ConfigError
from suite.gpt import gpt_char, init_gpt2


# --- initialisers (each model says which paper's code it follows) ------------------------------

def _init_torchvision_resnet(model: nn.Module) -> None:
    """torchvision's ResNet init: conv kaiming normal (fan_out, relu), BN 1/0, Linear left at
    PyTorch's default."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _init_openlth_lenet(model: nn.Module) -> None:
    """OpenLTH's `kaiming_normal` (its LeNet default): weights kaiming normal (fan_in, gain
    sqrt 2); biases keep PyTorch's default uniform init."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)


@torch.no_grad()
def _truncated_normal_(w: torch.Tensor, std: float) -> None:
    """N(0, std^2) redrawn wherever |w| > 2 std, as TensorFlow's truncated_normal (and several
    times faster on CPU than nn.init.trunc_normal_'s erfinv for VGG-sized layers)."""
    w.normal_(0.0, std)
    flat = w.view(-1)
    redo = torch.nonzero(flat.abs() > 2 * std).flatten()
    while len(redo):  # each round ~4.6% of the previous one stays outside
        values = torch.randn(len(redo), dtype=w.dtype, device=w.device) * std
        flat[redo] = values
        redo = redo[values.abs() > 2 * std]


def _init_snip_tf(model: nn.Module) -> None:
    """SNIP's TensorFlow init (initializer_w_ap='vs', initializer_b_ap='zeros'):
    tf.variance_scaling_initializer() = scale 1, fan_in, normal truncated at 2 sigma (the
    0.8796 factor restores the variance the truncation removes); biases 0; BN gamma 1 beta 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()  # in_features, or in_channels * kh * kw
            _truncated_normal_(m.weight, math.sqrt(1.0 / fan_in) / 0.87962566103423978)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _init_grasp(model: nn.Module) -> None:
    """GraSP's models/base/init_utils.weights_init: conv kaiming normal (fan_out, relu),
    Linear N(0, 0.01) with bias 0, BN 1/0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --- input checks --------------------------------------------------------------------------------

def _image_input(name: str, spec: DataSpec, min_size: int = 1) -> tuple[int, int, int]:
    """(C, H, W) of an image dataset, or a one-line error naming the model and the shape."""
    shape = tuple(spec.input_shape)
    if len(shape) != 3:
        raise ConfigError(
            f"model '{name}' needs image inputs (C, H, W); dataset '{spec.name}' gives {shape}")
    if min(shape[1:]) < min_size:
        raise ConfigError(
            f"model '{name}' needs images of at least {min_size}x{min_size}; dataset '{spec.name}' gives {shape}")
    return shape  # type: ignore[return-value]


# --- fully connected -----------------------------------------------------------------------------

class MLP(nn.Module):
    """Flatten, then Linear+ReLU layers of the given widths, then a Linear classifier."""

    def __init__(self, in_features: int, widths: tuple[int, ...], num_classes: int):
        super().__init__()
        sizes = (in_features, *widths, num_classes)
        self.names = [f"fc{k + 1}" for k in range(len(sizes) - 1)]
        for name, n_in, n_out in zip(self.names, sizes[:-1], sizes[1:]):
            self.add_module(name, nn.Linear(n_in, n_out))

    def channel_chain(self) -> list[tuple[str, str | None, str]]:
        """(layer, its BatchNorm or None, the layer reading its outputs) for every layer whose whole
        output neurons can be removed (`suite.cost` compacts along these)."""
        return [(a, None, b) for a, b in zip(self.names[:-1], self.names[1:])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for name in self.names[:-1]:
            x = F.relu(getattr(self, name)(x))
        return getattr(self, self.names[-1])(x)


def lenet300(spec: DataSpec, cfg: ModelConfig | None = None) -> nn.Module:
    """LeNet-300-100 (LeCun et al. 1998; the LTH/SNIP MNIST network); 266,610 params on MNIST."""
    model = MLP(math.prod(spec.input_shape), (300, 100), spec.num_classes)
    return model


def tiny_mlp(spec: DataSpec, cfg: ModelConfig | None = None) -> nn.Module:
    """A three-layer MLP of a few thousand weights, for fast tests."""
    model = MLP(math.prod(spec.input_shape), (32, 16), spec.num_classes)
    return model


# --- convolutional -------------------------------------------------------------------------------

class TinyCNN(nn.Module):
    """conv3x3(8)-BN-ReLU, conv3x3(16, stride 2)-ReLU, 2x2 adaptive average pool, Linear: for tests."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        # 2x2 (not 1x1) pooling keeps coarse layout, so the classes of the synthetic data,
        # which differ in layout, stay separable; works for any input of at least 1x1
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16 * 4, num_classes)

    def channel_chain(self) -> list[tuple[str, str | None, str]]:
        return [("conv1", "bn1", "conv2"), ("conv2", None, "fc")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.fc(self.pool(x).flatten(1))


def tiny_cnn(spec: DataSpec, cfg: ModelConfig | None = None) -> nn.Module:
    """TinyCNN for (C, H, W) inputs of any small size."""
    (c, _h, _w) = _image_input("tiny_cnn", spec)
    model = TinyCNN(c, spec.num_classes)
    return model


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv+BN, identity or 1x1 conv+BN shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet18(nn.Module):
    """ResNet-18 for 32x32 images: 3x3 stem, no max-pool, blocks [2, 2, 2, 2] of width 64..512."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, in_planes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, num_classes)

    def channel_chain(self) -> list[tuple[str, str | None, str]]:
        """Only each block's inner conv: the others' outputs meet a residual sum and keep their width."""
        return [(f"{layer}.{b}.conv1", f"{layer}.{b}.bn1", f"{layer}.{b}.conv2")
                for layer in ("layer1", "layer2", "layer3", "layer4") for b in (0, 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        # global average pool: on 32x32 inputs the same as the usual avg_pool2d(4) on 4x4 maps
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def resnet18(spec: DataSpec, cfg: ModelConfig | None = None) -> nn.Module:
    """CIFAR ResNet-18 (as in kuangliu/pytorch-cifar); 11,173,962 params for 10 classes."""
    (c, _h, _w) = _image_input("resnet18", spec)
    model = CifarResNet18(c, spec.num_classes)
    return model


VGG16_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# GraSP's defaultcfg[19]: no max-pool after the last block; forward() average-pools 2x2 instead
VGG19_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)


def _vgg_chain(features: nn.Sequential, after: list[tuple[str | None, str]]) -> list[tuple[str, str | None, str]]:
    """Each feature conv with its BatchNorm and the next conv; the last conv feeds `after`'s first
    layer, and `after` continues the chain: [(bn or None, layer), ...]."""
    convs = [f"features.{i}" for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]
    bns = [f"features.{int(c.split('.')[1]) + 1}" for c in convs]
    steps = list(zip(bns, convs[1:])) + [(bns[-1], after[0][1])]
    chain = [(c, bn, nxt) for c, (bn, nxt) in zip(convs, steps)]
    return chain + [(a[1], b[0], b[1]) for a, b in zip(after[:-1], after[1:])]


def _vgg_features(plan: tuple, in_channels: int, conv_bias: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for v in plan:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = nn.Conv2d(in_channels, v, 3, padding=1, bias=conv_bias)
            layers += [conv, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class VGGLike(nn.Module):
    """SNIP's VGG-like (Zagoruyko's CIFAR VGG-16): 13 conv+BN+ReLU with biases, five 2x2
    max-pools, FC 512 + BN + ReLU, FC classes; no dropout (snip/network.py, version 'like')."""

    def __init__(self, in_channels: int, spatial: int, num_classes: int):
        super().__init__()
        self.features = _vgg_features(VGG16_PLAN, in_channels, conv_bias=True)
        self.fc1 = nn.Linear(512 * spatial, 512)
        self.bn_fc1 = nn.BatchNorm1d(512)
        self.fc2 = nn.Linear(512, num_classes)

    def channel_chain(self) -> list[tuple[str, str | None, str]]:
        return _vgg_chain(self.features, [(None, "fc1"), ("bn_fc1", "fc2")])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        return self.fc2(F.relu(self.bn_fc1(self.fc1(x))))


def vgg_like(spec: DataSpec, cfg: ModelConfig | None = None) -> nn.Module:
    """SNIP's VGG-like; 14,991,946 params on CIFAR-10."""
    (c, h, w) = _image_input("vgg_like", spec, min_size=32)
    model = VGGLike(c, (h // 32) * (w // 32), spec.num_classes)
    return model


class VGG19(nn.Module):
    """GraSP's VGG-19 (models/base/vgg.py): cfg E conv (no bias)+BN+ReLU, four max-pools,
    a 2x2 average pool, one Linear(512, classes)."""

    def __init__(self, in_channels: int, spatial: int, num_classes: int):
        super().__init__()
        self.features = _vgg_features(VGG19_PLAN, in_channels, conv_bias=False)
        self.classifier = nn.Linear(512 * spatial, num_classes)

    def channel_chain(self) -> list[tuple[str, str | None, str]]:
        return _vgg_chain(self.features, [(None, "classifier")])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(self.features(x), 2)
        return self.classifier(x.flatten(1))


def vgg19(spec: DataSpec, cfg: ModelConfig | None = None) -> nn.Module:
    """GraSP's VGG-19 with BN; 20,035,018 params on CIFAR-10."""
    (c, h, w) = _image_input("vgg19", spec, min_size=32)
    model = VGG19(c, (h // 32) * (w // 32), spec.num_classes)
    return model


# a name -> its builder (spec, model config); a model in its own file is one import and one line here
MODELS: dict[str, Callable[[DataSpec, ModelConfig], nn.Module]] = {
    "lenet300": lenet300,
    "resnet18": resnet18,
    "vgg_like": vgg_like,
    "vgg19": vgg19,
    "tiny_mlp": tiny_mlp,
    "tiny_cnn": tiny_cnn,
    "gpt_char": gpt_char,
}


def _init_pytorch(model: nn.Module) -> None:
    """PyTorch's own layer defaults (what each layer's reset_parameters drew at construction:
    kaiming uniform with a = sqrt 5 for weights, uniform(+-1/sqrt(fan_in)) biases): nothing to redo."""


# model.init: each name is the init of the code it is named after; "model" picks each model's own
INITS: dict[str, Callable[[nn.Module], None]] = {
    "pytorch": _init_pytorch,
    "kaiming_normal": _init_openlth_lenet,
    "torchvision_resnet": _init_torchvision_resnet,
    "snip_variance_scaling": _init_snip_tf,
    "grasp": _init_grasp,
    "gpt2": init_gpt2,
}
MODEL_INITS = {  # the init of the code each model reproduces
    "lenet300": "kaiming_normal",        # OpenLTH's LeNet default
    "tiny_mlp": "kaiming_normal",
    "tiny_cnn": "torchvision_resnet",
    "resnet18": "torchvision_resnet",    # torchvision / kuangliu's ResNet
    "vgg_like": "snip_variance_scaling",  # SNIP's TensorFlow code
    "vgg19": "grasp",                     # GraSP's init_utils.weights_init
    "gpt_char": "gpt2",                   # nanoGPT's GPT-2 init
}


def resolve_init(model: str, init: str = "model") -> str:
    """The init that `model.init` names for this model (its own for "model")."""
    return MODEL_INITS[model] if init == "model" else init


def build_model(name: str, spec: DataSpec, init: str = "model", config: ModelConfig | None = None) -> nn.Module:
    """The registered model `name` for inputs of `spec` (sizes from `config`, where a model has
    any), initialised from the global torch RNG by `init` (see INITS; "model": the model's own,
    MODEL_INITS)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}' (valid: {', '.join(sorted(MODELS))})")
    init = resolve_init(name, init)
    if init not in INITS:
        raise ConfigError(f"model.init: '{init}' is not one of model, {', '.join(INITS)}")
    model = MODELS[name](spec, config or ModelConfig())
    INITS[init](model)
    return model

