"""The report's torch-free copy of the registry (suite.method_facts) equals the registry itself."""
from __future__ import annotations

import dataclasses

from suite import method_facts as F
from suite.config import to_dict
from suite.experiment import Config
from suite.methods import METHODS, method_class, method_kind, method_settings, settings_section


def test_every_registered_method_has_its_facts_in_registry_order():
    assert F.method_names() == tuple(METHODS)
    for name in METHODS:
        cls = method_class(name)
        assert F.FACTS[name] == F.MethodFacts(method_kind(cls), settings_section(cls)), name


def test_kinds_follow_the_class_attributes():
    assert F.dense_methods() == ("dense",)
    assert F.ablation_methods() == ("shuffle", "reinit", "invert", "ticket", "rewire")
    assert F.method_kind("lth") == F.PRUNES and F.method_kind("nope") is None


def test_settings_defaults_equal_each_sections_dataclass():
    assert list(F.SETTINGS_DEFAULTS) == list(method_settings())
    for section, cls in method_settings().items():
        assert F.SETTINGS_DEFAULTS[section] == to_dict(cls()), section
    assert F.method_sections() == ("prune", *method_settings())


def test_default_tree_is_the_default_config():
    tree = F.default_tree()
    assert tree == to_dict(Config())
    assert list(tree) == [f.name for f in dataclasses.fields(Config)]
    # a copy: changing it leaves the next one alone
    tree["snip"]["batches"] = 7
    assert F.default_tree()["snip"]["batches"] == 1
