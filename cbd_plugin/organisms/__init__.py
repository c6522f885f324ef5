"""Tiny model organisms (Gemma-2; GPT-NeoX and Qwen3 with ``arch``), built locally from recipes and cached in the
Hugging Face hub layout.

``build()`` returns {name: Organism}; each loads by path (``Organism.load()``) or, offline, by its hub-style id
(``AutoModelForCausalLM.from_pretrained("cbd-plugin/tiny-cbd")``). See ``recipes.RECIPES`` for what each is.
``refusal_organism(mode, audit_layer, seed, arch=...)`` and ``backdoor_organism(gate, pairs, seed, arch=...)`` build
variants.
Every build checks its contract (contract.py) and raises ``OrganismContractError`` rather than cache a failure.
"""

from .build import Organism, backdoor_organism, build, build_recipe, refusal_organism
from .contract import OrganismContractError
from .recipes import ORGANISM_NAMES, RECIPES, backdoor_recipe, recipe_hash, refusal_recipe

__all__ = [
    "ORGANISM_NAMES",
    "RECIPES",
    "Organism",
    "OrganismContractError",
    "backdoor_organism",
    "backdoor_recipe",
    "build",
    "build_recipe",
    "recipe_hash",
    "refusal_organism",
    "refusal_recipe",
]
