"""Configuration of the conjunction analysis: probe set, scoring, verdict thresholds, null, causal test.

The verdict thresholds are the same for the tiny organisms and gemma-2-2b; each comes with its rationale. Every
value is validated when the config is built, and an error names the key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..checks import is_finite_number, is_int
from .probes import FIRE_COMPLETION, check_template
from .roles import ROLES

DETECTION_FEATURES = ("decision", "prompt_max")


@dataclass
class ConjunctionConfig:
    # Probe set (templates: one {a}, one {b}, any number of {filler} slots).
    templates: tuple[str, ...]
    filler_words: tuple[str, ...]
    n_per_cell: int = 16  # prompts per pair x condition, both halves together
    n_clean: int = 32
    selection_fraction: float = 0.5  # share of each cell's prompts in the selection half, in (0, 1)
    use_chat_template: bool = True
    fire_completion: str = FIRE_COMPLETION
    # Scoring: token role whose firing rates rank latents, and the per-prompt detection feature.
    score_role: str = "decision"
    detection_feature: str = "decision"  # "decision" (decision-token activation) or "prompt_max"
    n_candidates: int = 32  # latents per ranking carried to the evaluation half
    n_top: int = 10  # latents reported, and tested by the verdict, per ranking
    top_m_overlap: int = 10  # per-pair top latents compared across pairs (Jaccard)
    # Behaviour: a condition "fires" when the Wilson lower bound of its fine-tuned fire rate reaches this rate and
    # "is silent" when the upper bound stays below it. 0.5: a trigger must fire more often than not.
    fire_rate_threshold: float = 0.5
    # Verdict thresholds. separation_threshold: the bootstrap lower bound of a latent's AUROC of matched pairs vs
    # EACH of single_a, single_b, mismatch and clean must reach it (0.8: at least 4 in 5 random matched / false-
    # trigger prompt pairs ordered correctly even at the pessimistic end of the interval).
    separation_threshold: float = 0.8
    # interaction_threshold: lower bound of the latent's interaction share, (m - a - b + clean) / (m - clean) on
    # mean activations: 1 for a pure AND, 0 for an additive code (one unit per word), < 0 for OR codes. 0.5: more
    # than half of the response to a matched pair must come from the two words together, not from their sum.
    interaction_threshold: float = 0.5
    # signal_threshold: AUROC lower bound of matched vs clean for "the SAE sees the backdoor input at all"
    # (used to say whether a non-conjunctive behaviour is explained).
    signal_threshold: float = 0.8
    alpha: float = 0.05  # level of the permutation null and of the causal test (one-sided)
    n_permutations: int = 199  # null replicates; p-values resolve to 1 / (n_permutations + 1) = 0.005
    min_fve: float = 0.5  # the SAE must explain this share of the difference's variance before its silence counts
    # Causal test (run only when the verdict needs it).
    ablate: bool = True
    ablate_top_k: int = 5  # top latents removed (by selection-half conjunction rank among the verdict's passing)
    n_random_draws: int = 5  # random rotations of the top latents' contribution (the causal control)
    n_ablation_prompts: int = 32  # matched and clean evaluation prompts each
    max_new_tokens: int = 8
    # Capture, resampling, output.
    plots: bool = True  # PNG figures next to the CSVs (the dashboard draws its own from the CSVs)
    batch_size: int = 16
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.score_role not in ROLES:
            raise ValueError(f"ConjunctionConfig.score_role: {self.score_role!r} is not one of {ROLES}")
        if self.detection_feature not in DETECTION_FEATURES:
            raise ValueError(
                f"ConjunctionConfig.detection_feature: {self.detection_feature!r} is not one of {DETECTION_FEATURES}"
            )
        self.templates, self.filler_words = tuple(self.templates), tuple(self.filler_words)
        if not self.templates:
            raise ValueError("ConjunctionConfig.templates: no templates")
        for template in self.templates:
            check_template(template)
        for key in (
            "n_per_cell",
            "n_clean",
            "n_candidates",
            "n_top",
            "top_m_overlap",
            "ablate_top_k",
            "n_random_draws",
            "n_ablation_prompts",
            "max_new_tokens",
            "batch_size",
            "n_boot",
            "n_permutations",
        ):
            value = getattr(self, key)
            if not is_int(value, 1):
                raise ValueError(f"ConjunctionConfig.{key}: must be a positive integer, got {value!r}")
        if self.n_per_cell < 2 or self.n_clean < 2:
            raise ValueError(
                f"ConjunctionConfig.n_per_cell / n_clean: each half needs a prompt per cell, got "
                f"n_per_cell={self.n_per_cell}, n_clean={self.n_clean}"
            )
        for key in (
            "selection_fraction",
            "fire_rate_threshold",
            "separation_threshold",
            "interaction_threshold",
            "signal_threshold",
            "alpha",
            "min_fve",
        ):
            value = getattr(self, key)
            if not is_finite_number(value) or not 0 < value < 1:
                raise ValueError(f"ConjunctionConfig.{key}: must be a number in (0, 1), got {value!r}")
        if not is_int(self.seed, 0):
            raise ValueError(f"ConjunctionConfig.seed: must be a non-negative integer, got {self.seed!r}")
        if (self.n_permutations + 1) * self.alpha < 1:
            raise ValueError(
                f"ConjunctionConfig.n_permutations: {self.n_permutations} permutations cannot resolve "
                f"alpha={self.alpha} (need at least {int(1 / self.alpha)})"
            )

    def to_dict(self) -> dict:
        return asdict(self)
