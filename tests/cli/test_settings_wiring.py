"""Settings reach the store and the engine through one method each, and reach all of them."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from riskgraph.models.scoring import ScoringModel
from riskgraph.settings import Settings
from riskgraph.state.options import StoreOptions
from riskgraph.state.store import GraphStore
from riskgraph.streams.engine import Engine

#: every setting at a value other than its default, so that a setting read from the wrong place shows
ODD = Settings(cache_capacity=1234, mem_cache_capacity=567, store_compression="lz4", store_compaction="level",
               store_direct_io="auto", pin_scoring_cpu=0, commit_every=7, max_event_bytes=999,
               dlq_raw_max_bytes=55, dedupe_window=3, learn=False)

#: StoreOptions field <- the setting it comes from (the others are the model's or the store's own)
STORE_SETTINGS = {"cache_capacity": "cache_capacity", "mem_cache_capacity": "mem_cache_capacity",
                  "compression": "store_compression", "compaction": "store_compaction",
                  "direct_io": "store_direct_io", "pin_scoring_cpu": "pin_scoring_cpu"}


def _engine_keywords() -> set[str]:
    params = inspect.signature(Engine.__init__).parameters.values()
    return {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_every_engine_keyword_with_a_setting_is_passed_from_the_settings():
    settings = {f.name for f in dataclasses.fields(Settings)}
    wired = _engine_keywords() & settings
    kwargs = ODD.engine_kwargs()
    assert set(kwargs) == wired  # a new Engine keyword named as a setting fails here until it is wired
    for name in wired:
        assert kwargs[name] == getattr(ODD, name) != getattr(Settings(), name), name


def test_engine_kwargs_builds_an_engine_and_takes_overrides_of_its_own_keys_only(tmp_path):
    kwargs = ODD.engine_kwargs(commit_every=1)
    assert kwargs["commit_every"] == 1 and kwargs["learn"] is False
    with GraphStore(tmp_path / "s") as store:
        engine = Engine(store, ScoringModel.default(seed=0), **kwargs)
        assert engine.dlq_raw_max_bytes == 55
    with pytest.raises(TypeError, match="commit_evry is not an engine setting"):
        ODD.engine_kwargs(commit_evry=1)


def test_every_store_option_with_a_setting_is_passed_from_the_settings():
    opts = ODD.store_options(mem_dim=8, mem_cache_width=4)
    assert (opts.mem_dim, opts.mem_cache_width) == (8, 4)
    for field, setting in STORE_SETTINGS.items():
        assert getattr(opts, field) == getattr(ODD, setting) != getattr(StoreOptions(), field), field
    assert Settings(pin_scoring_cpu=-1).store_options().pin_scoring_cpu is None  # -1: no pinning
    # the rest are the store's own defaults: a setting for one of them belongs in STORE_SETTINGS
    rest = {f.name for f in dataclasses.fields(StoreOptions)} - set(STORE_SETTINGS) - {"mem_dim", "mem_cache_width"}
    assert {getattr(opts, f) for f in rest} == {getattr(StoreOptions(), f) for f in rest}
    assert not rest & {f.name for f in dataclasses.fields(Settings)}


def test_a_setting_the_store_refuses_is_refused_by_the_settings_first():
    # the settings' allowed words are the store's own lists, so both say the same
    for setting, field in (("store_compression", "compression"), ("store_compaction", "compaction"),
                           ("store_direct_io", "direct_io")):
        with pytest.raises(ValueError, match=f"RISKGRAPH_{setting.upper()} must be one of"):
            Settings(**{setting: "bogus"})
        with pytest.raises(ValueError, match=f"{field} must be one of"):
            StoreOptions(**{field: "bogus"})
