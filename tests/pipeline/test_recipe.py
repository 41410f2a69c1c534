"""Recipe parsing and validation: every error at once, with its YAML line."""

import pytest

from modelpress.errors import BadInputError
from modelpress.finetune import FineTune
from modelpress.pipeline import Recipe, builtin_recipes


def test_yaml_round_trip():
    recipe = Recipe.from_yaml("- finetune: {epochs: 2, lr: 0.01, select: {types: [linear]}}\n")
    assert recipe.steps[0].config == FineTune(epochs=2, lr=0.01)
    assert recipe.steps[0].select == {"types": ["linear"]}
    assert Recipe.from_yaml(recipe.to_yaml()).to_list() == recipe.to_list()


def test_all_errors_listed_with_lines():
    text = "- finetune: {epochs: 0}\n- finetun: {}\n- finetune: {epoch: 3}\n- finetune: {lr: -1}\n"
    with pytest.raises(BadInputError) as info:
        Recipe.from_yaml(text)
    msg = str(info.value)
    assert "4 error(s)" in msg
    assert "line 1" in msg and "`epochs` of `FineTune` must be an int ≥ 1; got 0" in msg
    assert "line 2" in msg and "Did you mean `finetune`?" in msg
    assert "line 3" in msg and "unknown setting(s) ['epoch']" in msg
    assert "line 4" in msg and "`lr` of `FineTune`" in msg


@pytest.mark.parametrize("text", ["[]", "- 3\n", "- {a: 1, b: 2}\n", "key: value\n", "- finetune: [1, 2\n"])
def test_malformed_recipes_are_bad_input(text):
    with pytest.raises(BadInputError):
        Recipe.from_yaml(text)


def test_bad_select_is_reported():
    with pytest.raises(BadInputError, match="select.types"):
        Recipe.from_yaml("- finetune: {select: {types: [lstm]}}\n")


def test_builtin_recipes_all_parse():
    names = builtin_recipes()
    assert "finetune" in names
    for name in names:
        assert Recipe.resolve(name).steps


def test_unknown_recipe_name_suggests():
    with pytest.raises(BadInputError, match="Did you mean"):
        Recipe.resolve("finetun")


def test_from_list_accepts_configs():
    recipe = Recipe.from_list([FineTune(epochs=1)])
    assert recipe.to_list() == [{"finetune": {"epochs": 1, "lr": 0.001, "batch_size": None,
                                              "optimizer": "adam", "weight_decay": 0.0,
                                              "schedule": "constant", "distill": False, "alpha": 0.5,
                                              "temperature": 4.0, "augment": False}}]


def test_exponent_floats_and_comment_first_text():
    recipe = Recipe.from_yaml("# tuned\n- finetune: {lr: 1e-3, weight_decay: 5E-5}\n")
    assert recipe.steps[0].config == FineTune(lr=0.001, weight_decay=5e-05)


@pytest.mark.parametrize("text, needle", [
    ('- finetune: "abc"\n', "must map to a mapping"),
    ("- finetune: 5\n", "must map to a mapping"),
    ("- finetune: {lr: true}\n", "`lr` of `FineTune`"),
    ("- prune: {round_to: 1.0}\n", "`round_to` of `Prune`"),
])
def test_wrong_types_are_bad_input(text, needle):
    with pytest.raises(BadInputError, match=needle):
        Recipe.from_yaml(text)


def test_recipe_file_that_is_not_text(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BadInputError, match="UTF-8"):
        Recipe.from_yaml(bad)
