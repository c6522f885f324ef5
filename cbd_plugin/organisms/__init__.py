"""Tiny Gemma-2 model organisms, built locally from recipes and cached in the Hugging Face hub layout.

``build()`` returns {name: Organism}; each loads by path (``Organism.load()``) or, offline, by its hub-style id
(``AutoModelForCausalLM.from_pretrained("cbd-plugin/tiny-cbd")``). See ``recipes.RECIPES`` for what each is.
"""

from .build import Organism, build, build_recipe
from .recipes import ORGANISM_NAMES, RECIPES, recipe_hash

__all__ = ["ORGANISM_NAMES", "RECIPES", "Organism", "build", "build_recipe", "recipe_hash"]
