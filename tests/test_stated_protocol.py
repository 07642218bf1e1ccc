"""The seed-experiment configs hold the training protocol the research states (and the presets
their papers'); a changed value must change this test and the config header that explains it."""
from pathlib import Path

import pytest

from suite import experiment as E

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# file: (model, data, target sparsity, epochs, t_end, lr, momentum, weight decay, batch, lr schedule)
STATED = {
    "lenet300_mnist.yaml": ("lenet300", "mnist", 0.789, 160, 80.0, 0.01, 0.9, 5e-4, 128, "cosine"),
    "resnet18_cifar10.yaml": ("resnet18", "cifar10", 0.729, 200, 100.0, 0.1, 0.9, 5e-4, 128, "cosine"),
    "vgg_like_cifar10.yaml": ("vgg_like", "cifar10", 0.97, 350, 175.0, 0.1, 0.9, 5e-4, 128, "cosine"),
    "vgg19_cifar10.yaml": ("vgg19", "cifar10", 0.98, 400, 200.0, 0.1, 0.9, 5e-4, 128, "cosine"),
}
# presets: the papers' own protocols (epochs, lr, momentum, weight decay, batch, schedule, milestones)
PRESETS = {
    "snip_lenet300_paper.yaml": ("snip", 0.98, 167, 0.1, 0.9, 5e-4, 100, "step", (42, 83, 125)),
    "grasp_vgg19_paper.yaml": ("grasp", 0.98, 160, 0.1, 0.9, 5e-4, 128, "step", (80, 120)),
}


@pytest.mark.parametrize("name", sorted(STATED))
def test_seed_config_holds_the_stated_protocol(name):
    cfg = E.load_config(CONFIGS / name)
    t = cfg.train
    got = (cfg.model.name, cfg.data.name, cfg.prune.target_sparsity, t.epochs, cfg.prune.t_end, t.lr, t.momentum,
           t.weight_decay, t.batch_size, t.lr_schedule)
    assert got == STATED[name]
    assert (t.optimizer, cfg.prune.schedule, cfg.prune.t_start) == ("sgd", "linear", 0)
    header = [line for line in (CONFIGS / name).read_text().splitlines() if line.startswith("#")]
    assert any("stated" in line for line in header), "the header says what the research states"
    assert any(line.startswith("# Init") for line in header), "the header says which init and why"
    assert cfg.model.init == "model" and cfg.data.val_size == 0
    if cfg.data.name == "cifar10":
        assert cfg.data.augment and cfg.data.jitter == 0.2


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_paper_presets_hold_their_papers_protocol(name):
    cfg = E.load_config(CONFIGS / "presets" / name)
    t = cfg.train
    got = (cfg.method, cfg.prune.target_sparsity, t.epochs, t.lr, t.momentum, t.weight_decay, t.batch_size,
           t.lr_schedule, tuple(t.milestones))
    assert got == PRESETS[name]


def test_snip_preset_validates_on_a_tenth_and_starts_from_snips_init():
    cfg = E.load_config(CONFIGS / "presets" / "snip_lenet300_paper.yaml")
    assert (cfg.data.val_size, cfg.model.init) == (6000, "snip_variance_scaling")


@pytest.mark.parametrize("name,method", [("rigl_lenet300_erk.yaml", "rigl"), ("set_lenet300_erk.yaml", "set")])
def test_author_distribution_presets(name, method):
    cfg = E.load_config(CONFIGS / "presets" / name)
    stated = E.load_config(CONFIGS / "lenet300_mnist.yaml", ["prune.target_sparsity=0.98"])
    assert (cfg.method, cfg.prune.distribution, cfg.prune.target_sparsity) == (method, "erk", 0.98)
    assert cfg.train == stated.train  # the research's training protocol, the authors' distribution
