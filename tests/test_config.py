import re
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, TINY, cli, one_error
from suite import config as C
from suite import experiment as E
from suite import run as RUN
from suite.errors import ConfigError
from suite.exits import EXIT_BAD_INPUT
from suite.experiment import load_config
from suite.methods import PruningMethod

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_resolve_t_end_to_half_the_epochs():
    cfg = E.load_config(None, ["train.epochs=30"])
    assert cfg.prune.t_end == 15.0


def test_overrides_are_typed():
    cfg = E.load_config(None, ["train.lr=0.01", "train.milestones=[80,120]", "prune.keep_first_dense=true",
                               "train.epochs=160", "seed=7"])
    assert cfg.train.lr == 0.01 and cfg.train.milestones == (80, 120) and cfg.prune.keep_first_dense is True
    assert cfg.seed == 7
    assert E.load_config(None, ["train.lr=1"]).train.lr == 1.0  # an int is a fine float
    assert E.load_config(None, ["train.lr=1e-3"]).train.lr == 0.001  # YAML 1.1 reads this as a string


@pytest.mark.parametrize("override, message", [
    ("train.lrr=0.1", "unknown config key 'train.lrr'"),
    ("nope=1", "unknown config key 'nope'"),
    ("train.epochs=ten", "train.epochs: expected int, got 'ten'"),
    ("train.epochs=2.5", "train.epochs: expected int"),
    ("prune.keep_first_dense=1", "prune.keep_first_dense: expected true or false"),
    ("prune.target_sparsity=1.0", "prune.target_sparsity: must be in [0, 1), got 1.0"),
    ("prune.target_sparsity=-0.1", "prune.target_sparsity: must be in [0, 1)"),
    ("train.lr=-0.1", "train.lr: must be positive"),
    ("prune.t_end=500", "prune.t_end: 500 is beyond the last epoch (30); set prune.t_end=null (half the epochs, which follows "
                           "train.epochs) or an epoch up to 30"),
    ("method=magic", "unknown method 'magic' (valid: "),
    ("train.precision=fp8", "train.precision: 'fp8' is not one of fp32, bf16, fp16"),
    ("train", "override 'train' is not of the form key=value"),
    ("train.lr=inf", "train.lr: must be a finite number, got inf"),
    ("train.lr=.nan", "train.lr: must be a finite number, got nan"),
])
def test_bad_values_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        E.load_config(None, ["train.epochs=30", override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        E.load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        E.load_config(bad)


def test_hash_is_pinned():
    # If this changes, every past run folder is renamed: change it only on purpose.
    assert E.science_settings(E.load_config(None, [])) == {"method": "progressive", "prune.t_end": 15.0}
    assert E.experiment_hash(E.load_config(None, [])) == "4bfc1133572b"


def test_hash_ignores_seed_and_non_science_fields_but_not_science():
    base = E.load_config(None, [])
    assert E.experiment_hash(E.load_config(None, ["seed=123", "data.loader=torchvision",
                                                  "train.eval_every=5", "wandb.mode=disabled"])) \
        == E.experiment_hash(base)
    assert E.experiment_hash(E.load_config(None, ["train.lr=0.2"])) != E.experiment_hash(base)
    assert E.run_dir(E.load_config(None, ["seed=123"]), "runs").name == "seed_123"


def test_settings_of_other_methods_do_not_split_folders():
    a = E.load_config(None, ["snip.batches=5", "prune.schedule=cubic"], method="dense")
    b = E.load_config(None, [], method="dense")
    assert E.experiment_hash(a) == E.experiment_hash(b)
    assert a.prune.target_sparsity == 0.0  # the dense control is at sparsity 0 whatever was asked
    p = E.load_config(None, ["snip.batches=5"])
    assert E.experiment_hash(p) == E.experiment_hash(E.load_config(None, []))


def test_round_trip_through_dict():
    cfg = E.load_config(None, ["train.milestones=[3,6]", "train.epochs=10", "data.synthetic_shape=[1,4,4]"])
    assert E.from_dict(C.to_dict(cfg)) == cfg
    # what a method module asks of the config it was given, instead of importing suite.experiment
    assert type(cfg).rebuild(C.to_dict(cfg)) == cfg and cfg.science() == E.science_settings(cfg)


def test_a_settings_section_named_like_a_config_method_is_refused():
    for name in ("rebuild", "science", "train"):
        with pytest.raises(ImportError, match=f"method '{name}': its settings section clashes"):
            E._config_class({name: C.DataConfig})


def _config_files():
    files = sorted(CONFIGS.glob("*.yaml")) + sorted((CONFIGS / "presets").glob("*.yaml"))
    return [f for f in files if f.name != "published.yaml"]


@pytest.mark.parametrize("path", _config_files(), ids=lambda p: p.name)
def test_every_config_file_loads_and_names_its_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and "suite/run.py" in first and path.name in first
    cfg = E.load_config(path)
    assert cfg.method == (yaml.safe_load(path.read_text()).get("method") or "progressive")


def test_seed_experiments_are_what_the_research_ran():
    r18 = E.load_config(CONFIGS / "resnet18_cifar10.yaml")
    assert (r18.model.name, r18.data.name, r18.train.epochs, r18.prune.target_sparsity) == ("resnet18", "cifar10", 200, 0.729)
    assert (r18.train.lr, r18.train.momentum, r18.train.weight_decay, r18.train.batch_size) == (0.1, 0.9, 5e-4, 128)
    assert E.load_config(CONFIGS / "vgg_like_cifar10.yaml").train.epochs == 350
    assert E.load_config(CONFIGS / "vgg19_cifar10.yaml").prune.target_sparsity == 0.98
    assert E.load_config(CONFIGS / "lenet300_mnist.yaml").train.lr == 0.01
    for s in (0.70, 0.75, 0.80, 0.85, 0.90, 0.95):
        assert E.load_config(CONFIGS / "resnet18_cifar10.yaml", [f"prune.target_sparsity={s}"]).prune.target_sparsity == s
    assert C.SEEDS == (42, 123, 456, 789, 999)


class WantsCubic(PruningMethod):
    """A method's `defaults` for shared keys: below the YAML file and the overrides, in the hash."""
    name = "wants_cubic"
    config_keys = ("prune.",)
    defaults = {"prune.schedule": "cubic"}


def test_method_defaults_sit_below_overrides_and_enter_the_hash(monkeypatch):
    from suite import methods
    monkeypatch.setitem(methods.METHODS, "wants_cubic", f"{__name__}:WantsCubic")
    cfg = E.load_config(None, [], method="wants_cubic")
    assert cfg.prune.schedule == "cubic"
    assert E.science_settings(cfg) == {"method": "wants_cubic", "prune.schedule": "cubic", "prune.t_end": 15.0}
    assert E.load_config(None, ["prune.schedule=linear"], method="wants_cubic").prune.schedule == "linear"
    assert E.load_config(None, []).prune.schedule == "linear"  # other methods keep the global default


def test_the_config_tree_and_help_come_from_the_registry():
    from suite.methods import METHODS, method_class, method_sections, settings_section
    sections = [settings_section(method_class(m)) for m in METHODS]
    assert {"snip", "grasp", "lth"} <= set(sections)
    assert set(method_sections()) == {"prune"} | {s for s in sections if s}
    names = [f.name for f in __import__("dataclasses").fields(E.Config)]
    assert names[:6] == ["method", "seed", "data", "model", "train", "prune"] and names[-1] == "wandb"
    assert "  lth.rate (float) = 0.2  # fraction of the remaining weights removed per round" in E.help_lines()
    with pytest.raises(ConfigError, match="^snip.batches: must be at least 1, got 0$"):
        E.load_config(None, ["snip.batches=0"], method="snip")


def test_distribution_is_checked_and_only_methods_that_read_it_keep_it():
    with pytest.raises(ConfigError, match="^prune.distribution: 'erdos' is not one of global, uniform, erk$"):
        E.load_config(None, ["prune.distribution=erdos"])
    assert E.load_config(None, ["prune.distribution=erk"], method="snip").prune.distribution == "erk"
    assert E.load_config(None, ["prune.distribution=erk"], method="dense").prune.distribution == "global"


def test_t_end_null_follows_the_budget():
    for epochs in (4, 20, 160):
        cfg = E.load_config("configs/lenet300_mnist.yaml", [f"train.epochs={epochs}", "prune.t_end=null"])
        assert cfg.prune.t_end == epochs // 2


def test_init_and_validation_split_are_settings_that_keep_old_names():
    base = E.load_config(None, [])
    assert (base.model.init, base.data.val_size) == ("model", 0)
    assert "model.init" not in E.science_settings(base) and "data.val_size" not in E.science_settings(base)
    other = E.load_config(None, ["model.init=pytorch", "data.val_size=5000"])
    assert E.science_settings(other)["model.init"] == "pytorch"
    assert E.science_settings(other)["data.val_size"] == 5000
    assert E.experiment_hash(other) != E.experiment_hash(base)
    with pytest.raises(ConfigError, match="model.init: 'xavier' is not one of model, pytorch, kaiming_normal"):
        E.load_config(None, ["model.init=xavier"])
    with pytest.raises(ConfigError, match="data.val_size: must be non-negative, got -1"):
        E.load_config(None, ["data.val_size=-1"])


# --- issue 25 case 20: `2:4` is the N:M pattern, never YAML 1.1's base-60 integer 124 -----------------

NM = ["prune.structure=nm", "prune.target_sparsity=0.5"]


def test_nm_written_as_n_colon_m_on_the_command_line_is_the_pattern():
    assert E.parse_override("prune.nm=2:4") == ("prune.nm", "2:4")  # PyYAML's safe_load gives 124
    colon = E.load_config(None, [*NM, "prune.nm=2:4"])
    listed = E.load_config(None, [*NM, "prune.nm=[2, 4]"])
    assert colon.prune.nm == (2, 4) and E.experiment_hash(colon) == E.experiment_hash(listed)
    assert E.load_config(None, [*NM, "prune.target_sparsity=0.75", "prune.nm=1:4"]).prune.nm == (1, 4)


def test_nm_written_as_n_colon_m_in_a_yaml_file_is_the_pattern(tmp_path):
    path = tmp_path / "nm.yaml"
    path.write_text("prune:\n  structure: nm\n  target_sparsity: 0.5\n  nm: 2:4\n")
    assert E.load_config(path).prune.nm == (2, 4)


@pytest.mark.parametrize("override, message", [
    ("train.epochs=1:30", "train.epochs: expected int, got '1:30'"),  # not 90
    ("train.lr=1:30.5", "train.lr: expected float, got '1:30.5'"),  # not 90.5
    ("prune.nm=124", "prune.nm: expected a list of int, got 124"),
])
def test_base_60_numbers_are_text_that_a_number_field_refuses(override, message):
    with pytest.raises(ConfigError) as e:
        E.load_config(None, [override])
    assert str(e.value) == message


def test_the_process_count_is_in_the_hash_only_beyond_one_process():
    """Issue 25 case 23: world size 1 keeps every existing hash (the quick start's is pinned here)."""
    cfg = E.load_config(CONFIGS / "quickstart.yaml")
    assert E.experiment_hash(cfg) == "19883d549892" and E.with_processes(cfg, 1) is cfg
    two = E.with_processes(cfg, 2)
    assert two.train.processes == 2 and E.experiment_hash(two) == "b39f7ef13ed7"
    assert E.science_settings(two)["train.processes"] == 2 and "train.processes" not in E.science_settings(cfg)
    with pytest.raises(ConfigError) as e:
        E.load_config(None, ["train.processes=3"])
    assert str(e.value) == "train.batch_size: 128 is not divisible by train.processes 3 (the launcher's process count)"


def test_naming_the_models_own_init_is_the_default_experiment():
    """Issue 25, case 4: model.init=kaiming_normal on LeNet (its own) made a second, bitwise identical
    experiment; the hash resolves it, and every existing hash stays (the pinned one above)."""
    default = E.load_config(None, ["model.name=lenet300"])
    named = E.load_config(None, ["model.name=lenet300", "model.init=kaiming_normal"])
    assert named.model.init == "model"
    assert E.experiment_hash(named) == E.experiment_hash(default)
    assert "model.init" not in E.science_settings(named)
    other = E.load_config(None, ["model.name=lenet300", "model.init=pytorch"])
    assert E.science_settings(other)["model.init"] == "pytorch"  # another init is another experiment
    resnet = E.load_config(None, ["model.name=resnet18", "model.init=kaiming_normal"])
    assert resnet.model.init == "kaiming_normal"  # not resnet18's own (torchvision_resnet)


def test_a_derived_t_end_is_never_named_as_if_the_user_set_it():
    """Issue 25, partial: t_start after half the epochs was blamed on prune.t_end, which the user never set."""
    with pytest.raises(ConfigError) as e:
        E.load_config(None, ["train.epochs=10", "prune.t_start=6"])
    assert str(e.value) == ("prune.t_start: 6 is after the schedule's end, epoch 5 (prune.t_end unset: half of "
                            "train.epochs=10); set prune.t_end between 6 and 10, or an earlier prune.t_start")
    with pytest.raises(ConfigError) as e:  # set by the user: named as such
        E.load_config(None, ["train.epochs=10", "prune.t_start=6", "prune.t_end=4"])
    assert str(e.value) == "prune.t_end: 4.0 is before prune.t_start 6.0"


def test_quickstart_shortens_with_one_override_and_keeps_its_name():
    # issue 25 case 21: the quick start writes its schedule end as half the budget (t_end_frac 0.5)
    assert E.load_config("configs/quickstart.yaml", ["train.epochs=10"]).prune.t_end == 5.0
    cfg = E.load_config("configs/quickstart.yaml")
    assert (cfg.prune.t_end, cfg.prune.t_end_frac) == (20.0, None)  # resolved to epochs: one experiment
    assert E.experiment_hash(cfg) == "19883d549892"  # the hash it had with `t_end: 20`
    written = E.load_config("configs/quickstart.yaml", ["prune.t_end_frac=null", "prune.t_end=20"])
    assert E.experiment_hash(written) == E.experiment_hash(cfg)


def test_one_epoch_never_collapses_the_schedule_onto_the_initialisation():
    # issue 25 case 6: half of one epoch floored to 0 made progressive prune at init
    assert E.load_config(None, ["train.epochs=1"]).prune.t_end == 0.5
    assert E.load_config(None, ["train.epochs=3"]).prune.t_end == 1.0  # the floor, as past hashes have it


def test_fractions_of_the_budget_are_exclusive_with_epochs():
    with pytest.raises(ConfigError, match=r"^prune.t_end_frac: give prune.t_end \(epochs\) or prune.t_end_frac"):
        E.load_config(None, ["prune.t_end=4", "prune.t_end_frac=0.5"])
    with pytest.raises(ConfigError, match=r"^prune.t_end_frac: must be a fraction of the budget in \[0, 1\], got 1.5"):
        E.load_config(None, ["prune.t_end_frac=1.5"])
    assert E.load_config(None, ["train.epochs=10", "prune.t_start_frac=0.2", "prune.t_end_frac=0.7"]).prune.t_start \
        == 2.0


def test_a_step_budget_keeps_fractions_and_drops_the_epochs():
    cfg = E.load_config(None, ["train.steps=300", "train.epochs=7"])
    assert (cfg.train.epochs, cfg.prune.t_end, cfg.prune.t_end_frac) == (30, None, 0.5)
    assert E.science_settings(cfg) == {"method": "progressive", "prune.t_end_frac": 0.5, "train.steps": 300}
    with pytest.raises(ConfigError, match=r"^prune.t_end: under train.steps give schedule points as fractions"):
        E.load_config(None, ["train.steps=300", "prune.t_end=4"])
    assert E.load_config(None, ["train.steps=300"], method="dense").prune.t_end_frac is None


def test_new_training_keys_keep_old_names_and_are_checked():
    base = E.load_config(None, [])
    same = E.load_config(None, ["train.steps=0", "train.betas=[0.9, 0.999]", "train.grad_clip=0",
                                "train.optimizer=sgd"])
    assert E.experiment_hash(same) == E.experiment_hash(base) == "4bfc1133572b"
    gpt = E.load_config(None, ["train.optimizer=adamw", "train.betas=[0.9, 0.99]", "train.lr=0.001",
                               "train.lr_schedule=warmup_cosine", "train.warmup_steps=100", "train.min_lr=1e-4",
                               "train.grad_clip=1.0", "train.steps=2000"])
    assert {k: v for k, v in E.science_settings(gpt).items() if k.startswith("train.")} == {
        "train.betas": [0.9, 0.99], "train.grad_clip": 1.0, "train.lr": 0.001, "train.lr_schedule": "warmup_cosine",
        "train.min_lr": 1e-4, "train.optimizer": "adamw", "train.steps": 2000, "train.warmup_steps": 100}
    for override, message in [("train.steps=-1", "train.steps: must be non-negative"),
                              ("train.betas=[0.9]", "train.betas: expected [beta1, beta2]"),
                              ("train.grad_clip=-1", "train.grad_clip: must be non-negative"),
                              ("train.min_lr=1", "train.min_lr: must be in [0, train.lr = 0.1]"),
                              ("train.warmup_steps=10", "train.warmup_steps: is read by train.lr_schedule=warmup_cosine"),
                              ("train.optimizer=lamb", "train.optimizer: 'lamb' is not one of sgd, adam, adamw")]:
        with pytest.raises(ConfigError, match="^" + re.escape(message)):
            E.load_config(None, [override])
    with pytest.raises(ConfigError, match=r"^train.warmup_steps: 300 leaves no step of the 300-step budget"):
        E.load_config(None, ["train.steps=300", "train.lr_schedule=warmup_cosine", "train.warmup_steps=300"])


# --- bad input and faults: one clear line and an exit code, or a recovery ------------------------

YAML_CASES = {
    "duplicate key in a section": ("train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n",
                                   ["duplicate key 'lr' on line 4 (first on line 2)"]),
    "duplicate top-level key": ("seed: 1\nmethod: dense\nseed: 2\n", ["duplicate key 'seed' on line 3"]),
    "duplicate key three deep": ("a:\n  b:\n    c: 1\n    c: 1\n", ["duplicate key 'c' on line 4"]),
    "empty file": ("", ["is empty"]),
    "only comments": ("# nothing here\n", ["is empty"]),
    "a list, not a mapping": ("- 1\n- 2\n", ["expected a mapping"]),
    "a scalar, not a mapping": ("42\n", ["expected a mapping"]),
    "broken YAML": ("train: [1, 2\n", ["not valid YAML"]),
}


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("case", YAML_CASES)
def test_bad_config_file_is_one_line_exit_2(case, tmp_path, capsys):
    text, parts = YAML_CASES[case]
    path = tmp_path / "c.yaml"
    path.write_text(text)
    code, err, _ = cli(capsys, RUN.main, ["--config", str(path), "--out", str(tmp_path / "runs"), *TINY])
    assert code == EXIT_BAD_INPUT
    one_error(err, path, *parts)
    assert not (tmp_path / "runs").exists()


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("payload,part", [(bytes(range(256)) * 4, "a binary file"),
                                          (b"train:\n  lr: \xe9\xe9\n", "not UTF-8 text")])
def test_binary_or_non_text_config_is_one_line(payload, part, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_bytes(payload)
    code, err, _ = cli(capsys, RUN.main, ["--config", str(path), "--out", str(tmp_path / "runs")])
    assert code == EXIT_BAD_INPUT
    one_error(err, path, part)


@pytest.mark.usefixtures("quiet")
def test_config_that_is_a_folder(tmp_path, capsys):
    code, err, _ = cli(capsys, RUN.main, ["--config", str(tmp_path), "--out", str(tmp_path / "runs")])
    assert code == EXIT_BAD_INPUT
    one_error(err, tmp_path, "not a file")


@pytest.mark.usefixtures("quiet")
def test_repo_configs_have_no_duplicate_keys():
    from suite.config import read_yaml
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        assert read_yaml(path) is not None, path


@pytest.mark.usefixtures("quiet")
def test_negative_zero_sparsity_is_zero(tmp_path, capsys):
    dirs = [cli(capsys, RUN.main, ["--print-dir", "--out", str(tmp_path), *TINY, f"prune.target_sparsity={s}"])[2]
            for s in ("-0.0", "0.0", "0")]
    assert dirs[0] == dirs[1] == dirs[2] and "-s0-" in dirs[0]


@pytest.mark.usefixtures("quiet")
def test_yaml_merge_keys_load_and_duplicates_still_fail(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("snip: &scoring {bn_mode: train}\ngrasp:\n  <<: *scoring\n  temperature: 100\n")
    cfg = load_config(path, [], "grasp")
    assert (cfg.grasp.bn_mode, cfg.grasp.temperature) == ("train", 100)
    path.write_text("snip: &scoring {bn_mode: train}\ngrasp:\n  <<: *scoring\n  temperature: 1\n  temperature: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'temperature' on line 5"):
        load_config(path, [], "grasp")
