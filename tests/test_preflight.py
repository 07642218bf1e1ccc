"""suite.preflight: what a run can be refused for before any data loads or any folder is made."""
import pytest

from suite import experiment as E
from suite.errors import ConfigError
from suite.preflight import check_run


def _refused(*overrides, method="progressive"):
    with pytest.raises(ConfigError) as e:
        check_run(E.load_config(None, list(overrides), method=method), files=False)
    return str(e.value)


def test_a_validation_split_that_takes_the_whole_training_set_is_blamed_on_val_size():
    """Issue 25, partial: data.val_size >= 4000 (mnist1d's training set) was blamed on train.batch_size
    ("-1000 examples")."""
    assert _refused("data.val_size=5000") == ("data.val_size: 5000 leaves no training examples of mnist1d (it has "
                                              "4000 before the split); set a smaller data.val_size")
    assert _refused("data.val_size=4000").startswith("data.val_size: 4000 leaves no training examples of mnist1d")
    assert _refused("data.val_size=3900") == ("train.batch_size: 128 is larger than the training set (100 "
                                              "examples after data.val_size=3900 held out)")
    check_run(E.load_config(None, ["data.val_size=3872"]), files=False)  # 128 left: one batch


def test_a_text_split_with_no_window_is_refused_before_any_folder_with_the_key_to_blame():
    """A 1e8-character context was blamed on train.batch_size ("0 examples"); a 2-character validation
    text was refused only after the run folder and its W&B run were made. Tiny Shakespeare's sizes
    are known without its file: 1,115,394 characters, 1,003,854 of them train, 111,540 test."""
    gpt = ["model.name=gpt_char", "data.name=shakespeare_char", "train.batch_size=12"]
    assert _refused(*gpt, "data.context=100000000") == (
        "data.context: 100000000 is longer than shakespeare_char's training or test text (1003854 / 111540 characters)")
    assert _refused(*gpt, "data.context=111540") == (  # the test text holds 111,539 targets: no window of 111,540
        "data.context: 111540 is longer than shakespeare_char's training or test text (1003854 / 111540 characters)")
    check_run(E.load_config(None, ["model.name=gpt_char", "data.name=shakespeare_char", "train.batch_size=9",
                                   "data.context=111539"]), files=False)  # one test window, 9 training ones
    assert _refused(*gpt, "data.context=64", "data.val_size=64") == (
        "data.val_size: 64 characters hold no window of data.context=64 (at least 65)")
    check_run(E.load_config(None, [*gpt, "data.context=64", "data.val_size=65"]), files=False)
    assert _refused(*gpt, "data.context=64", "data.val_size=1003790") == (
        "data.val_size: 1003790 characters leave fewer than a window of training text (shakespeare_char trains on "
        "1003854 characters, data.context is 64)")


def test_a_model_refused_by_the_data_names_the_dataset():
    """The preflight's model build named the dataset 'preflight'."""
    assert _refused("model.name=gpt_char", "data.name=mnist1d") == (
        "model 'gpt_char' needs token windows (context,); dataset 'mnist1d' gives (1, 40)")


def test_a_dynamic_method_whose_mask_would_never_change_is_refused():
    """RigL with rigl.update_every at or past rigl.t_end of the budget, or SET with no rewiring before the end,
    trained their random start mask unchanged and were reported as RigL and SET. mnist1d: 4,000 training
    examples, batch 128: 31 steps an epoch."""
    steps = ["train.steps=20", "train.lr_schedule=cosine"]
    assert _refused(*steps, "rigl.update_every=15", method="rigl") == (
        "rigl.update_every: 15 steps leaves no mask update before rigl.t_end (step 15 of the 20-step budget): RigL "
        "would train its random start mask unchanged; set it below 15")
    check_run(E.load_config(None, [*steps, "rigl.update_every=14"], method="rigl"), files=False)  # one, at step 14
    assert _refused(*steps, "set.update_every=20", method="set") == (
        "set.update_every: 20 steps leaves no rewiring before the last of the 20 steps: SET would train its random "
        "start mask unchanged; set it below 20")
    check_run(E.load_config(None, [*steps, "set.update_every=19"], method="set"), files=False)  # one, at step 19
    assert _refused("train.epochs=1", method="set") == (
        "train.epochs: SET rewires at each epoch end but the last, so 1 epoch holds no rewiring and SET would train "
        "its random start mask unchanged; train 2 or more, or set set.update_every (steps)")
    check_run(E.load_config(None, ["train.epochs=2"], method="set"), files=False)
    # an epoch budget counts its steps from the data: 3 epochs of 31 steps = 93, t_end 0.75 -> step 69.75
    assert _refused("train.epochs=3", "rigl.update_every=70", method="rigl").startswith(
        "rigl.update_every: 70 steps leaves no mask update before rigl.t_end (step 69.75 of the 93-step budget)")
    assert _refused("train.epochs=1", "train.lr_schedule=warmup_cosine", "train.warmup_steps=31") == (
        "train.warmup_steps: 31 leaves no step of the 31-step round to the cosine; set it below 31")
