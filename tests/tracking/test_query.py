import time

import numpy as np
import pytest

import striate
from striate.errors import ConfigError
from striate.tracking.store import MetricSeries, open_store
from striate.tracking.store.base import downsample_m4


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store(request, tmp_path):
    """The same queries must give the same answers on both backends."""
    if request.param == "sqlite":
        return open_store(tmp_path)
    return open_store(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(empty_store):
    store = empty_store
    specs = [
        ("a", {"lr": 0.1, "optimizer": "sgd", "nesterov": True}, ["baseline"], [0.5, 0.8, 0.85]),
        ("b", {"lr": 0.01, "optimizer": "adamw", "nesterov": False}, ["x"], [0.6, 0.95, 0.9]),
        ("c", {"lr": 0.001, "optimizer": "sgd", "nesterov": True}, ["baseline", "x"], [0.2, 0.3]),
        ("lenet-d", {"lr": 0.5, "optimizer": "sgd"}, [], []),
    ]
    for name, config, tags, accs in specs:
        run = striate.init(name=name, config=config, tags=tags, store=store, model="lenet5", system_metrics=False)
        for step, acc in enumerate(accs):
            run.log({"test/acc1": acc}, step=step)
        run.finish("failed" if name == "c" else "finished")
        time.sleep(0.01)  # distinct creation times for the default order
    return store


def names(store, where=None, sort=None, **kw):
    return [r.name for r in store.get_runs(store.search_runs(where=where, sort=sort, **kw))]


@pytest.mark.parametrize("where,expected", [
    ("params.lr > 0.005", {"a", "b", "lenet-d"}),
    ("params.lr > 0.005 and metrics.test/acc1.max >= 0.9", {"b"}),
    ("metrics.test/acc1 > 0.86", {"b"}),  # last value
    ("metrics.test/acc1.min < 0.55", {"a", "c"}),
    ("params.optimizer = sgd", {"a", "c", "lenet-d"}),
    ("params.optimizer != sgd", {"b"}),
    ("params.nesterov = true", {"a", "c"}),
    ("tags contains baseline", {"a", "c"}),
    ("tags contains baseline and not tags contains x", {"a"}),
    ("status = failed or name ~ lenet", {"c", "lenet-d"}),
    ("(status = finished) and not (params.lr < 0.05)", {"a", "lenet-d"}),
    ("model = lenet5 and duration < 3600", {"a", "b", "c", "lenet-d"}),
    ('created > "2000-01-01"', {"a", "b", "c", "lenet-d"}),
    ('created < "2000-01-01"', set()),
])
def test_filters(store, where, expected):
    assert set(names(store, where)) == expected


def test_sorting(store):
    assert names(store) == ["lenet-d", "c", "b", "a"]  # newest first
    assert names(store, sort="-metrics.test/acc1.max") == ["b", "a", "c", "lenet-d"]  # missing values last
    assert names(store, sort="params.lr") == ["c", "b", "a", "lenet-d"]
    assert names(store, sort="params.lr desc", limit=2) == ["lenet-d", "a"]
    assert names(store, sort="params.optimizer") == ["b", "lenet-d", "c", "a"]  # text params; ties newest first


@pytest.mark.parametrize("bad,message", [
    ("params.lr >", "cannot parse"),
    ("weights.x > 1", "unknown field"),
    ("metrics.loss > high", "not a number"),
    ('created > "yesterday"', "as a time"),
    ("metrics.`loss`.median < 1", "unknown metric aggregate"),
])
def test_bad_filters_are_clear(store, bad, message):
    with pytest.raises(ConfigError, match=message):
        store.search_runs(where=bad)


def test_archived_runs_are_hidden_unless_asked(store):
    (run_id,) = store.search_runs(where="name = a")
    store.update_run(run_id, archived=True)
    assert "a" not in names(store)
    assert "a" in names(store, include_archived=True)


def test_delete_removes_everything(store, tmp_path):
    (run_id,) = store.search_runs(where="name = b")
    store.delete_run(run_id)
    assert "b" not in names(store, include_archived=True)
    assert len(store.history(run_id, "test/acc1")) == 0


def test_m4_keeps_spikes_first_and_last():
    n = 100_000
    values = np.sin(np.arange(n) / 1000.0)
    values[54_321] = 50.0  # a loss spike
    values[77_777] = -50.0
    series = MetricSeries("loss", np.arange(n), np.arange(n, dtype=float), values)
    down = downsample_m4(series, 400)
    assert len(down) <= 400
    assert 50.0 in down.values and -50.0 in down.values
    assert down.steps[0] == 0 and down.steps[-1] == n - 1
    assert (np.diff(down.steps) > 0).all()
    assert downsample_m4(series, 0) is series


def test_a_diverged_metric_neither_matches_nor_sorts_first(empty_store):
    for name, accs in (("ok", [0.5, 0.7]), ("diverged", [0.5, float("nan")]), ("blown", [0.5, float("inf")])):
        run = striate.init(name=name, store=empty_store, system_metrics=False, capture_console=False)
        for step, acc in enumerate(accs):
            run.log({"acc": acc}, step=step)
        run.finish()
    assert names(empty_store, "metrics.acc > 0.6") == ["ok"]
    assert names(empty_store, sort="-metrics.acc")[0] == "ok", "no value sorts last, not above every number"
    assert set(names(empty_store, "metrics.acc.max >= 0.5")) == {"ok", "diverged", "blown"}, "max ignores NaN/inf"
    assert empty_store.get_runs(empty_store.search_runs(where="name = diverged"))[0].metrics["acc"]["last"] is None


def test_text_comparisons_keep_what_was_written(empty_store):
    for name, tags in (("run-010", ["lr0.001", "base"]), ("run-1", ["lr0.1"]), ("run-2", ["baseline"])):
        striate.init(name=name, tags=tags, store=empty_store, system_metrics=False, capture_console=False).finish()
    assert names(empty_store, "name ~ 01") == ["run-010"], "01 is text here, not the number 1"
    assert set(names(empty_store, "tags ~ lr0")) == {"run-010", "run-1"}, "~ finds text inside a tag"
    assert names(empty_store, "tags = base") == ["run-010"], "= matches a whole tag"
    assert set(names(empty_store, "tags contains base")) == {"run-010"}


def test_a_param_that_is_sometimes_text_sorts_numbers_first_on_every_backend(empty_store):
    for name, lr in (("auto", "auto"), ("small", 0.001), ("big", 0.1)):
        striate.init(name=name, config={"lr": lr}, store=empty_store, system_metrics=False,
                     capture_console=False).finish()
    assert names(empty_store, sort="params.lr") == ["small", "big", "auto"]
    assert names(empty_store, sort="-params.lr") == ["big", "small", "auto"]


# -- one meaning on every backend and for every type (issue 10, item 11) ---------------------------
def _quick(store, name, **kw):
    striate.init(name=name, store=store, system_metrics=False, capture_console=False,
                 capture_environment=False, **kw).finish()
    time.sleep(0.01)


def test_a_number_finds_a_tag_however_it_is_asked(empty_store):
    _quick(empty_store, "y", tags=["2026", "v1.0"])
    _quick(empty_store, "n", tags=["2026.0"])
    for where in ("tags contains 2026", "tags = 2026", 'tags contains "2026"', "tags contains 1.0 or tags = v1.0"):
        assert "y" in names(empty_store, where), where
    assert names(empty_store, "tags contains 2026") == ["y"], "2026 is not 2026.0"


def test_tilde_ignores_case_and_equals_does_not_on_every_backend(empty_store):
    _quick(empty_store, "LeNet-Big", tags=["Baseline"])
    assert names(empty_store, "name ~ lenet") == ["LeNet-Big"]
    assert names(empty_store, "name ~ LENET-b") == ["LeNet-Big"]
    assert names(empty_store, "tags ~ baseLINE") == ["LeNet-Big"]
    assert names(empty_store, "name = lenet-big") == []
    assert names(empty_store, "tags = baseline") == [], "a whole tag matches with its case"
    assert names(empty_store, "tags contains baseline") == []


def test_a_nan_param_never_matches_a_comparison_and_sorts_last(empty_store):
    for name, lr in (("nan", float("nan")), ("small", 0.001), ("big", 0.1)):
        _quick(empty_store, name, config={"lr": lr})
    assert names(empty_store, "params.lr > 0.01") == ["big"]
    assert names(empty_store, "params.lr < 0.01") == ["small"]
    assert names(empty_store, sort="params.lr")[:2] == ["small", "big"]
    assert names(empty_store, sort="-params.lr")[:2] == ["big", "small"]


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_limit_must_be_a_positive_whole_number(empty_store, limit):
    _quick(empty_store, "a")
    with pytest.raises(ConfigError, match="limit"):
        empty_store.search_runs(limit=limit)


def test_a_limit_larger_than_any_store_is_no_limit(empty_store):
    _quick(empty_store, "a")
    assert names(empty_store, limit=10**30) == ["a"]
    assert names(empty_store, limit=1) == ["a"]


@pytest.mark.parametrize("where", [
    "name = \ud800",  # a lone surrogate as written
    'name = "\\ud800"',  # ... and as a JSON escape
    'name = "\\u0000"',
    "name = \x00",
    'name = "\\q"',
    "not " * 5000 + "name = a",
    "not " * 200 + "name = a",
    " or ".join(["name = a"] * 5000),
    " or ".join(["name = a"] * 300),
    "(" * 3000 + "name = a" + ")" * 3000,
    "metrics.loss ~ 1",
    "created ~ 2026",
    "tags > x",
])
def test_hostile_filters_give_one_query_error(empty_store, where):
    from striate.tracking.query import QueryError

    _quick(empty_store, "a")
    with pytest.raises(QueryError):
        empty_store.search_runs(where=where)


@pytest.mark.parametrize("sort", ["params.\ud800", "name\x00"])
def test_hostile_sort_keys_give_one_query_error(empty_store, sort):
    from striate.tracking.query import QueryError

    with pytest.raises(QueryError):
        empty_store.search_runs(sort=sort)


def test_runs_cli_refuses_a_limit_of_zero(tmp_path):
    from tests.conftest import run_cli

    _quick(open_store(tmp_path / "s"), "a")
    for bad in ("0", "-1"):
        done = run_cli("runs", "--limit", bad, "--store", str(tmp_path / "s"))
        assert done.returncode != 0 and "limit" in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_a_project_no_database_can_hold_is_one_query_error(empty_store):
    from striate.tracking.query import QueryError

    with pytest.raises(QueryError, match="NUL"):
        empty_store.search_runs(project="p\x00")
