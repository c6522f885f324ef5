"""The verdict grid on the tiny organisms: AND, OR, any-two and null backdoors x layers 1, 2, 3 x SAE seeds 0-2.

Every cell trains a fresh difference SAE (the demo's settings, cbd_plugin.backdoor.training.DifferenceSAEConfig) and
runs the full analysis (behaviour, specificity with intervals, permutation null, causal test when needed). Claims:
* tiny-cbd (AND): never a wrong verdict: conjunctive or inconclusive in every cell, an inconclusive reason says which
  check failed with its figure, and the behaviour is measured as pair-specific in every cell; at layer 3 conjunctive
  for all 3 seeds. (Seed 1 codes the conjunction with latents that each cover some pairs, plus a shared latent of
  interaction share 0.65 [0.48, 0.84]: inconclusive under the shared-latent rule alone, conjunctive on the per-pair
  route, every pair with its own latent of interaction share >= 0.71. The bounds were fixed before the grid ran.)
* tiny-cbd-or: or_gated; tiny-cbd-any2: any_two_gated; tiny-cbd-null: no_backdoor_signal; none of the 27 control
  cells is conjunctive and the null is never or_gated; in none of them would the SAE checks alone pass either
  (route ``none``: neither a shared latent nor one per pair passes the specificity and interaction bounds);
* every conjunctive cell's causal test: the top latents remove the behaviour beyond an equal-energy
  random-direction perturbation;
* on tiny-cbd-null the conjunction null (word exposure held fixed) has p > 0.05 in every cell, where the label
  null's p is at or near its floor;
* dead latents under 10% of the dictionary on the probe set in every cell (checked as each organism's grid is built).
The wall time of the grid is logged (the budget check lives in benchmarks/backdoor_grid.py).
"""

import time
from dataclasses import replace

import pytest

from cbd_plugin.backdoor.grid import GridSpec, run_grid
from cbd_plugin.backdoor.training import DifferenceSAEConfig
from cbd_plugin.demo import BASE, conjunction_config, conjunction_training_config, load
from cbd_plugin.organisms import RECIPES, build

pytestmark = [pytest.mark.slow, pytest.mark.grid]

EXPECTED = {
    "tiny-cbd": "conjunctive",
    "tiny-cbd-or": "or_gated",
    "tiny-cbd-any2": "any_two_gated",
    "tiny-cbd-null": "no_backdoor_signal",
}
LAYERS, SEEDS = (1, 2, 3), (0, 1, 2)


def organism_grid(name: str, tmp_path_factory):
    """The 9 cells of one organism (layers x seeds)."""
    if name not in RECIPES:
        pytest.skip(f"{name} is not among cbd_plugin.organisms.recipes.RECIPES yet")
    organisms = build([BASE, name])  # only these: cached per machine, built on first use
    spec = GridSpec(
        replace(conjunction_config(), plots=False), conjunction_training_config(), DifferenceSAEConfig(), LAYERS, SEEDS
    )
    start = time.perf_counter()
    table = run_grid(
        load(organisms[BASE]),
        {name: (load(organisms[name]), RECIPES[name].pairs)},
        spec,
        tmp_path_factory.mktemp("grid"),
    )
    print(
        f"\nverdict grid {name}: {len(table)} cells in {time.perf_counter() - start:.0f}s\n"
        + table.drop(columns=["reason"]).to_string()
    )
    assert len(table) == len(LAYERS) * len(SEEDS)
    assert (table.dead_fraction < 0.1).all(), table[["layer", "seed", "dead_fraction"]].to_string()  # AuxK works
    return table


# One class per organism: pytest-xdist's loadscope (README's command) sends each class to a worker of its own.
class TestAndOrganism:
    @pytest.fixture(scope="class")
    @classmethod
    def rows(cls, tmp_path_factory):
        return organism_grid("tiny-cbd", tmp_path_factory)

    def test_conjunctive_at_layer_3_for_every_seed(self, rows):
        last = rows[rows.layer == 3]
        assert (last.verdict == "conjunctive").all(), last[["seed", "verdict", "reason"]].to_string()

    def test_never_wrong_and_inconclusive_names_its_figure(self, rows):
        assert (rows.behaviour == "pair_specific_conjunction").all()
        assert rows.verdict.isin(["conjunctive", "inconclusive"]).all(), rows[["layer", "seed", "verdict"]].to_string()
        for reason in rows[rows.verdict == "inconclusive"].reason:
            assert reason.startswith("pair-specific behaviour") and ", but " in reason and "[" in reason


class ControlOrganism:
    """Its own verdict in every cell, never conjunctive, and the SAE checks alone would not pass either."""

    name: str

    @pytest.fixture(scope="class")
    @classmethod
    def rows(cls, tmp_path_factory):
        return organism_grid(cls.name, tmp_path_factory)

    def test_own_verdict_in_every_cell(self, rows):
        assert not (rows.verdict == "conjunctive").any()
        assert (rows.verdict == EXPECTED[self.name]).all(), rows[["layer", "seed", "verdict", "reason"]].to_string()
        assert (rows.route == "none").all(), rows[["layer", "seed", "route", "pairs_covered"]].to_string()


class TestOrOrganism(ControlOrganism):
    name = "tiny-cbd-or"


class TestAnyTwoOrganism(ControlOrganism):
    name = "tiny-cbd-any2"


class TestNullOrganism(ControlOrganism):
    name = "tiny-cbd-null"

    def test_conjunction_null_says_no(self, rows):
        """Fine-tuned on the trigger words without a gate: word identity leaves structure that the label null calls
        significant; the conjunction null (word exposure held fixed) does not."""
        shown = rows[["layer", "seed", "conjunction_null_p", "label_null_p"]].to_string()
        assert (rows.conjunction_null_p > 0.05).all(), shown
