"""Configuration of the conjunction analysis: probe set, scoring, thresholds, ablation, resampling."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .probes import FIRE_COMPLETION, check_template
from .roles import ROLES


@dataclass
class ConjunctionConfig:
    # Probe set (templates: one {x}, one {y}, any number of {filler} slots).
    templates: tuple[str, ...]
    filler_words: tuple[str, ...]
    n_per_cell: int = 16  # prompts per pair x condition, both halves together
    n_clean: int = 32
    selection_fraction: float = 0.5
    use_chat_template: bool = True
    fire_completion: str = FIRE_COMPLETION
    # Scoring: token role whose firing rates rank latents, and the per-prompt detection feature.
    score_role: str = "decision"
    detection_feature: str = "decision"  # "decision" (decision-token activation) or "prompt_max"
    n_candidates: int = 32  # latents per ranking carried to the evaluation half
    n_top: int = 10  # latents reported (and tested by the verdict) per ranking
    top_m_overlap: int = 10  # per-pair top latents compared across pairs (Jaccard)
    # Verdict thresholds.
    auroc_threshold: float = 0.8
    or_fraction: float = 0.5  # single-trigger / matched mean activation at or above which a latent is OR-like
    # Causal ablation.
    ablate: bool = True
    ablate_top_k: int = 5
    n_random_draws: int = 5
    n_ablation_prompts: int = 32  # matched and clean evaluation prompts each
    max_new_tokens: int = 8
    # Capture and resampling.
    batch_size: int = 16
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.score_role not in ROLES:
            raise ValueError(f"ConjunctionConfig.score_role: {self.score_role!r} is not one of {ROLES}")
        if self.detection_feature not in ("decision", "prompt_max"):
            raise ValueError(f"ConjunctionConfig.detection_feature: {self.detection_feature!r}")
        self.templates, self.filler_words = tuple(self.templates), tuple(self.filler_words)
        for template in self.templates:
            check_template(template)

    def to_dict(self) -> dict:
        return asdict(self)
