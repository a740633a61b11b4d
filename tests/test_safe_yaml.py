"""YAML from elsewhere: alias bombs, recursive aliases, deep nesting and huge files are one ConfigError."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from striate import safe_yaml
from striate.config import TrainConfig, load_file
from striate.errors import ConfigError
from tests.conftest import run_cli


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [lol]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly() -> None:
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="more than 100,000 nodes"):
        safe_yaml.loads(billion_laughs(), "bomb.yaml")
    assert time.perf_counter() - start < 2


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(ConfigError, match="recursive alias"):
        safe_yaml.loads("a: &x [1, *x]\n")
    with pytest.raises(ConfigError, match="recursive alias"):
        safe_yaml.loads("a: &x {b: *x}\n")


def test_deep_nesting_and_huge_input_are_refused() -> None:
    with pytest.raises(ConfigError, match="deeper than 100"):
        safe_yaml.loads("[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match="over the 100-byte limit"):
        safe_yaml.loads("x: " + "y" * 200, max_bytes=100)
    with pytest.raises(ConfigError, match="not UTF-8"):
        safe_yaml.loads(b"a: \xff\xfe")


def test_small_anchors_and_merge_keys_still_work() -> None:
    text = "base: &b {lr: 0.1, epochs: 2}\nrun: {<<: *b, epochs: 3}\nlist: [*b, *b]\n"
    assert safe_yaml.loads(text) == yaml.safe_load(text)


def test_config_file_bomb_and_recursion_are_config_errors(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("epochs: 1\n" + billion_laughs().replace("a0:", "model_options:\n  a0:", 1).replace(
        "\na", "\n  a"))
    with pytest.raises(ConfigError, match="more than"):
        load_file(bomb)
    loop = tmp_path / "loop.yaml"
    loop.write_text("tags: &t [a, *t]\n")
    with pytest.raises(ConfigError, match="recursive alias"):
        TrainConfig.from_file(loop)
    with pytest.raises(ConfigError, match="recursive alias"):
        TrainConfig().override({"model_options": "&x {a: *x}"})


def test_train_with_a_bomb_config_is_one_error_line(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("model_options:\n" + "".join(f"  {line}\n" for line in billion_laughs().splitlines()))
    done = run_cli("train", "lenet5", "-c", str(bomb), "--store", str(tmp_path / "s"), timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "more than 100,000 nodes" in done.stderr


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)


@settings(max_examples=150, deadline=None)
@given(plain)
def test_plain_documents_load_as_yaml_safe_load_does(value: object) -> None:
    text = yaml.safe_dump(value)
    assert safe_yaml.loads(text) == yaml.safe_load(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("&*ab[]{}:,- \n'\"!|>#<\t") + ["&a ", "*a", "<<: ", "\n  "]), max_size=40))
def test_any_text_gives_data_or_one_config_error(pieces: list[str]) -> None:
    text = "".join(pieces)
    try:
        safe_yaml.loads(text, max_nodes=500)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("text", ["\x1f", "a: \x07", b"key: \x00"])
def test_control_characters_are_one_config_error(text: str | bytes) -> None:
    # PyYAML's reader refuses them while the loader is being made, before parsing starts
    with pytest.raises(ConfigError, match="not valid YAML"):
        safe_yaml.loads(text, "spec")
