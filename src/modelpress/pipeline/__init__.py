"""Recipes of steps, applied to a Task and measured after each step."""

from modelpress.pipeline.recipe import Recipe, RecipeStep, builtin_recipes
from modelpress.pipeline.run import MeasureSettings, RunResult, compress_, run

__all__ = ["MeasureSettings", "Recipe", "RecipeStep", "RunResult", "builtin_recipes", "compress_", "run"]
