"""``contrastive_bio_sae``: contrastive TopK SAE and refusal-depth audit (placeholder until its issue lands)."""

from diffing.methods.diffing_method import DiffingMethod


class ContrastiveBioSAEMethod(DiffingMethod):
    def run(self):
        raise NotImplementedError("diffing method 'contrastive_bio_sae' (cbd-plugin) is not implemented yet")

    def visualize(self):
        raise NotImplementedError("diffing method 'contrastive_bio_sae' (cbd-plugin) is not implemented yet")

    @staticmethod
    def has_results(results_dir):
        return {}
