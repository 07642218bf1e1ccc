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
