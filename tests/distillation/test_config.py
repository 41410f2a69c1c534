"""The Distill config: every bad field named, students in canonical form, YAML round trip."""

import pytest

import modelpress as mp
from modelpress.errors import BadInputError
from modelpress.pipeline.recipe import Recipe


@pytest.mark.parametrize(
    "kwargs, field",
    [({"alpha": 1.5}, "alpha"), ({"alpha": True}, "alpha"), ({"temperature": 0}, "temperature"),
     ({"hidden": -1}, "hidden"), ({"attention": "x"}, "attention"), ({"epochs": 0}, "epochs"), ({"lr": 0}, "lr"),
     ({"optimizer": "rmsprop"}, "optimizer"), ({"schedule": "step"}, "schedule"), ({"batch_size": 0}, "batch_size"),
     ({"student": {"layers": [2, 0]}}, "student.layers"), ({"student": {"layers": []}}, "student.layers"),
     ({"student": {"width": 1.0}}, "student.width"), ({"student": {"width": 0.5, "round_to": 3}}, "student.round_to"),
     ({"student": {"depth": 2}}, "student"), ({"student": 3}, "student"), ({"teacher": 5}, "teacher"),
     ({"layer_map": {"a": 1}}, "layer_map"), ({"layer_map": "a"}, "layer_map")],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(BadInputError, match=f"`{field}` of `Distill`"):
        mp.Distill(**kwargs)


def test_finetune_checks_its_distillation_weights():
    with pytest.raises(BadInputError, match="`alpha` of `FineTune`"):
        mp.FineTune(distill=True, alpha=2)
    with pytest.raises(BadInputError, match="`distill` of `FineTune`"):
        mp.FineTune(distill="yes")


def test_canonical_forms_and_yaml_round_trip():
    cfg = mp.Distill(student={"layers": [0, 2, 4]}, layer_map={"a": "b"})
    assert cfg.student == {"layers": (0, 2, 4)} and cfg.layer_map == (("a", "b"),)
    assert mp.Distill(student={"width": 0.5}).student == {"width": 0.5, "round_to": 1}
    recipe = Recipe.from_yaml("- distill: {student: {layers: [0, 2]}, alpha: 0.7, layer_map: {x: y}}\n"
                              "- finetune: {distill: true, alpha: 0.2}")
    again = Recipe.from_list(recipe.to_list())
    assert again.steps[0].config == recipe.steps[0].config
    assert again.steps[1].config.distill is True and again.steps[1].config.alpha == 0.2


def test_builtin_recipes_parse():
    for name in ("distill-layers", "distill-width", "prune-kd"):
        assert Recipe.resolve(name).steps
