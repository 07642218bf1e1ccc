"""Model registry: exact parameter counts, shapes, seeded init, the papers' init schemes, errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from suite.config import DataConfig
from suite.data import DataSpec
from suite.datasets import build_data
from suite.errors import ConfigError
from suite.masks import prunable_weights
from suite.models import MODELS, build_model

MNIST = DataSpec("mnist", (1, 28, 28), 10, 60000, 10000)
CIFAR = DataSpec("cifar10", (3, 32, 32), 10, 50000, 10000)
MNIST1D = DataSpec("mnist1d", (1, 40), 10, 4000, 1000)
SYNTH = DataSpec("synthetic", (3, 8, 8), 10, 512, 256)
TEXT = DataSpec("shakespeare_char", (64,), 65, 15685, 1742)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_prunable(model: nn.Module) -> int:
    return sum(w.numel() for w in prunable_weights(model).values())


# (model, spec, total params, prunable weights), each worked out by hand:
COUNTS = [
    # 784*300 + 300 + 300*100 + 100 + 100*10 + 10; weights 235200 + 30000 + 1000
    ("lenet300", MNIST, 266_610, 266_200),
    # 40*300 + 300 + 300*100 + 100 + 100*10 + 10; weights 12000 + 30000 + 1000
    ("lenet300", MNIST1D, 43_410, 43_000),
    # 192*32 + 32 + 32*16 + 16 + 16*10 + 10; weights 6144 + 512 + 160
    ("tiny_mlp", SYNTH, 6_874, 6_816),
    # 40*32 + 32 + 32*16 + 16 + 16*10 + 10; weights 1280 + 512 + 160
    ("tiny_mlp", MNIST1D, 2_010, 1_952),
    # conv 3*8*9 = 216, BN 2*8, conv 8*16*9 + 16, fc 16*4*10 + 10; weights 216 + 1152 + 640
    ("tiny_cnn", SYNTH, 2_050, 2_008),
    # conv weights: stem 1728; layer1 4*36864; layer2 73728 + 3*147456 + 1x1 8192;
    # layer3 294912 + 3*589824 + 32768; layer4 1179648 + 3*2359296 + 131072; fc 5120
    # -> 11,164,352; plus BN 2*(64 + 4*64 + 5*128 + 5*256 + 5*512) = 9600 and fc bias 10
    ("resnet18", CIFAR, 11_173_962, 11_164_352),
    # VGG-16 conv weights 14,710,464 + conv biases 4224 + BN2d 8448 + fc1 262,144 + 512
    # + BN1d 1024 + fc2 5120 + 10; weights 14,710,464 + 262,144 + 5120
    ("vgg_like", CIFAR, 14_991_946, 14_977_728),
    # VGG-19 conv weights (no biases) 20,018,880 + BN2d 2*5504 + fc 5120 + 10
    ("vgg19", CIFAR, 20_035_018, 20_024_000),
    # wte 65*128 + wpe 64*128 + 4 blocks of (2 LayerNorm gains 2*128 + c_attn 128*384 + c_proj 128*128
    # + c_fc 128*512 + c_proj 512*128) + ln_f 128 + head 128*65, no biases; prunable: the 4 block
    # matrices, 4 * (49152 + 16384 + 65536 + 65536)
    ("gpt_char", TEXT, 812_416, 786_432),
]


@pytest.mark.parametrize("name,spec,total,prunable", COUNTS, ids=[f"{c[0]}-{c[1].name}" for c in COUNTS])
def test_exact_parameter_counts(name, spec, total, prunable):
    model = build_model(name, spec)
    assert n_params(model) == total
    assert n_prunable(model) == prunable


def test_every_model_has_a_pinned_count():
    assert {c[0] for c in COUNTS} == set(MODELS)


def test_resnet18_has_100_classes_head():
    # 100 classes: only the head changes, 512*90 + 90 more parameters
    assert n_params(build_model("resnet18", DataSpec("c100", (3, 32, 32), 100, 1, 1))) == 11_173_962 + 512 * 90 + 90


@pytest.mark.parametrize("name,spec", [
    ("lenet300", MNIST), ("lenet300", MNIST1D), ("tiny_mlp", SYNTH), ("tiny_mlp", MNIST1D),
    ("tiny_cnn", SYNTH), ("tiny_cnn", DataSpec("odd", (2, 5, 7), 4, 1, 1)), ("tiny_cnn", MNIST),
    ("resnet18", CIFAR), ("vgg_like", CIFAR), ("vgg19", CIFAR),
    ("vgg19", DataSpec("big", (3, 64, 64), 7, 1, 1)), ("vgg_like", DataSpec("big", (3, 64, 64), 7, 1, 1)),
])
def test_forward_shape(name, spec):
    torch.manual_seed(0)
    model = build_model(name, spec)
    out = model(torch.randn(2, *spec.input_shape))
    assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_init_is_a_function_of_the_torch_seed(name):
    spec = SYNTH if name.startswith("tiny") else TEXT if name.startswith("gpt") else CIFAR

    def init(seed):
        torch.manual_seed(seed)
        return build_model(name, spec).state_dict()

    a, b, c = init(7), init(7), init(8)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    weights = [k for k in a if k.endswith("weight") and a[k].ndim > 1]
    assert weights and all(not torch.equal(a[k], c[k]) for k in weights)


def _layers(model, kind):
    return [m for m in model.modules() if isinstance(m, kind)]


def test_resnet18_init_is_torchvisions():
    torch.manual_seed(0)
    model = build_model("resnet18", CIFAR)
    conv = model.layer3[0].conv2  # 256 -> 256, 3x3: fan_out = 256 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)
    for bn in _layers(model, nn.BatchNorm2d):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))
    # the classifier keeps PyTorch's default: uniform in +-1/sqrt(fan_in)
    assert model.fc.weight.abs().max().item() <= 1 / math.sqrt(512)
    assert model.fc.weight.abs().max().item() > 0.9 / math.sqrt(512)


def test_vgg19_init_is_grasps():
    torch.manual_seed(0)
    model = build_model("vgg19", CIFAR)
    assert model.classifier.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.equal(model.classifier.bias, torch.zeros(10))
    convs = _layers(model, nn.Conv2d)
    assert len(convs) == 16 and all(c.bias is None for c in convs)
    assert convs[-1].weight.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)


def test_vgg_like_init_is_snips_truncated_variance_scaling():
    torch.manual_seed(0)
    model = build_model("vgg_like", CIFAR)
    convs, linears = _layers(model, nn.Conv2d), _layers(model, nn.Linear)
    assert len(convs) == 13 and len(linears) == 2 and len(_layers(model, nn.BatchNorm1d)) == 1
    for layer in convs + linears:
        fan_in = layer.weight[0].numel()
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
        # truncated at 2 sigma of the underlying normal, sigma = sqrt(1/fan_in) / 0.8796
        assert layer.weight.abs().max().item() <= 2 * math.sqrt(1 / fan_in) / 0.87962566103423978
    big = convs[-1].weight  # 2.4M samples: the variance is 1/fan_in
    assert big.var().item() == pytest.approx(1 / (512 * 9), rel=0.01)


def test_lenet300_init_is_openlths_kaiming_normal():
    torch.manual_seed(0)
    model = build_model("lenet300", MNIST)
    assert model.fc1.weight.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.01)
    assert model.fc1.bias.abs().max().item() <= 1 / math.sqrt(784)  # PyTorch's default bias init


def test_unknown_model_names_the_valid_ones():
    valid = r"\(valid: gpt_char, lenet300, resnet18, tiny_cnn, tiny_mlp, vgg19, vgg_like\)"
    with pytest.raises(ConfigError, match=r"unknown model 'lenet5' " + valid):
        build_model("lenet5", MNIST)


@pytest.mark.parametrize("name", ["resnet18", "vgg_like", "vgg19", "tiny_cnn"])
def test_image_models_reject_sequences(name):
    message = rf"model '{name}' needs image inputs \(C, H, W\); dataset 'mnist1d' gives \(1, 40\)"
    with pytest.raises(ConfigError, match=message):
        build_model(name, MNIST1D)


@pytest.mark.parametrize("name", ["vgg_like", "vgg19"])
def test_vggs_reject_images_smaller_than_32(name):
    with pytest.raises(ConfigError, match=rf"model '{name}' needs images of at least 32x32"):
        build_model(name, MNIST)


@pytest.mark.parametrize("name", ["tiny_mlp", "tiny_cnn"])
def test_tiny_models_learn_the_synthetic_data(name):
    data = build_data(DataConfig(name="synthetic"), batch_size=32, seed=0)
    torch.manual_seed(0)
    model = build_model(name, data.spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(5):
        model.train()
        for x, y in data.train_batches(epoch):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in data.test_batches())
    assert 100 * correct / data.spec.n_test > 70  # chance is 10%


def test_model_init_names_the_init_and_pytorch_keeps_the_layer_defaults():
    def state(init, seed=3):
        torch.manual_seed(seed)
        return build_model("lenet300", MNIST, init).state_dict()

    own, named, plain = state("model"), state("kaiming_normal"), state("pytorch")
    assert all(torch.equal(own[k], named[k]) for k in own)  # lenet300's own init is OpenLTH's kaiming_normal
    torch.manual_seed(3)
    reference = nn.Linear(784, 300)  # the first layer PyTorch builds draws the same numbers
    assert torch.equal(plain["fc1.weight"], reference.weight) and torch.equal(plain["fc1.bias"], reference.bias)
    assert not torch.equal(own["fc1.weight"], plain["fc1.weight"])
    assert torch.equal(own["fc1.bias"], plain["fc1.bias"])  # kaiming_normal leaves biases at PyTorch's
    # PyTorch's kaiming_uniform(a=sqrt 5) has std 1/sqrt(3 fan_in); kaiming_normal sqrt(2 / fan_in)
    assert abs(float(plain["fc1.weight"].std()) - (1 / (3 * 784)) ** 0.5) < 2e-4
    assert abs(float(own["fc1.weight"].std()) - (2 / 784) ** 0.5) < 5e-4
    with pytest.raises(ConfigError, match="model.init: 'xavier' is not one of model, pytorch"):
        build_model("lenet300", MNIST, "xavier")
