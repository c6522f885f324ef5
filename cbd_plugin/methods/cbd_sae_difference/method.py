"""``cbd_sae_difference``: SAE on the activation difference, for conjunctive backdoors (placeholder)."""

from diffing.methods.sae_difference import SAEDifferenceMethod


class CBDSAEDifferenceMethod(SAEDifferenceMethod):
    def run(self):
        raise NotImplementedError("diffing method 'cbd_sae_difference' (cbd-plugin) is not implemented yet")

    def visualize(self):
        raise NotImplementedError("diffing method 'cbd_sae_difference' (cbd-plugin) is not implemented yet")

    @staticmethod
    def has_results(results_dir):
        return {}
