"""Recipes of steps, applied to a Task and measured after each step."""
