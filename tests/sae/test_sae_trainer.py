"""Contrastive TopK trainer: trainSAE protocol, decoder constraints, AuxK, contrastive tier separation, resume."""

import json
import math

import numpy as np
import pytest
import scipy.stats
import torch

from cbd_plugin.refusal.tier_batches import BalancedTierBatches
from cbd_plugin.sae import (
    ContrastiveSAEConfig,
    ContrastiveTopKTrainer,
    Dictionary,
    TopKSAE,
    evaluate_sae,
    pack_labels,
    train_sae,
)
from cbd_plugin.sae.contrastive_trainer import pool_profiles, supervised_infonce
from cbd_plugin.sae.sparse import SparseCodes
from cbd_plugin.sae.training import CHECKPOINT_NAME, CONFIG_NAME, MODEL_DIR
from cbd_plugin.stats import auroc

D = 32


def synthetic(seed, n_examples=200, tokens=8, n_atoms=64, tier_scale=1.0):
    """Tokens = 4 of ``n_atoms`` fixed unit atoms with random weights + noise; every other example is "hazard",
    and half of a hazard example's tokens also carry ``tier_scale`` times a fixed tier direction."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(n_atoms, D, generator=torch.Generator().manual_seed(1)), dim=1)
    direction = torch.nn.functional.normalize(torch.randn(D, generator=torch.Generator().manual_seed(2)), dim=0)
    n = n_examples * tokens
    chosen = torch.rand(n, n_atoms, generator=g).argsort(1)[:, :4]
    weights = torch.zeros(n, n_atoms).scatter_(1, chosen, torch.rand(n, 4, generator=g) * 2 + 0.5)
    x = weights @ atoms + 0.05 * torch.randn(n, D, generator=g)
    example_id = torch.arange(n_examples).repeat_interleave(tokens)
    tier = example_id % 2
    carries = (torch.rand(n, generator=g) < 0.5) & (tier == 1)
    return x + tier_scale * carries[:, None].float() * direction, tier, example_id


def small_config(**overrides):
    cfg = dict(
        steps=300,
        activation_dim=D,
        dict_size=64,
        k=4,
        lr=3e-3,
        dead_after_tokens=2000,
        seed=0,
        device="cpu",
        layer=0,
        lm_name="synthetic",
    )
    return {**cfg, **overrides}


def test_config_defaults_are_the_seed_settings():
    cfg = ContrastiveSAEConfig()
    assert (cfg.activation_dim, cfg.dict_size, cfg.k, cfg.layer, cfg.lr) == (2304, 6144, 32, 12, 3e-4)
    assert cfg.auxk_alpha == 1 / 32 and cfg.l1_coeff == 0 and cfg.pooling == "mean"
    trainer_config = cfg.trainer_config()
    assert trainer_config["trainer"] is ContrastiveTopKTrainer
    with pytest.raises(TypeError, match="unexpected keyword argument 'dict_sise'"):
        ContrastiveTopKTrainer(**small_config(dict_sise=3))
    with pytest.raises(ValueError, match="pooling must be one of"):
        ContrastiveTopKTrainer(**small_config(pooling="median"))


def test_driven_exactly_like_trainSAE(tmp_path):
    # The calls dictionary_learning.training.trainSAE makes, in its order.
    x, tier, eid = synthetic(0, n_examples=64)
    trainer_config = {"trainer": ContrastiveTopKTrainer, **small_config(steps=40)}
    trainer_class = trainer_config["trainer"]
    del trainer_config["trainer"]
    trainer = trainer_class(**trainer_config)
    config = trainer.config | {}
    json.dumps({"trainer": config})
    assert config["wandb_name"] and config["dict_class"] == "TopKSAE"
    trainer.model.to(torch.float32)
    assert trainer.ae is trainer.model and (trainer.layer, trainer.lm_name, trainer.seed) == (0, "synthetic", 0)
    batches = BalancedTierBatches(x, tier, eid, examples_per_tier=4, seed=0)
    recon = []
    for step, act in zip(range(40), batches):
        act = act.to(trainer.device).to(torch.float32)
        if step % 10 == 0 and step:
            with torch.no_grad():  # trainSAE's log_stats / get_stats
                x_, x_hat, f, losslog = trainer.loss(
                    act, step=step, logging=True, return_deads=True, use_threshold=False
                )
            assert x_.shape == x_hat.shape == (act.shape[0], D) and f.shape == (act.shape[0], 64)
            assert losslog["deads"].dtype == torch.bool and losslog["deads"].shape == (64,)
            assert losslog["contrastive_loss"] > 0
            params = trainer.get_logging_parameters()
            assert set(params) >= {"dead_fraction", "recon_loss", "auxk_loss", "contrastive_loss"}
            recon.append(losslog["recon_loss"])
        trainer.update(step, act)
    assert recon[-1] < 0.9 * recon[0]
    torch.save(trainer.model.state_dict(), tmp_path / "model_final.pt")  # trainSAE's save_model
    loaded = TopKSAE.from_seed_checkpoint(tmp_path / "model_final.pt", k=4, subtract_b_dec=True)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x[:50]), trainer.ae.encode(x[:50]))


def test_decoder_stays_unit_norm_and_encoder_starts_as_its_transpose():
    trainer = ContrastiveTopKTrainer(**small_config())
    assert torch.equal(trainer.ae.W_enc, trainer.ae.W_dec.T)
    torch.testing.assert_close(trainer.ae.W_dec.norm(dim=1), torch.ones(64))
    x, tier, eid = synthetic(1, n_examples=32)
    start = trainer.ae.W_dec.detach().clone()
    for step, act in zip(range(25), BalancedTierBatches(x, tier, eid, 4)):
        trainer.update(step, act)
        torch.testing.assert_close(trainer.ae.W_dec.norm(dim=1), torch.ones(64), atol=1e-6, rtol=0)
    assert (trainer.ae.W_dec - start).abs().max() > 0.05  # it did train


def test_gradient_along_decoder_rows_is_removed():
    trainer = ContrastiveTopKTrainer(**small_config())
    W = trainer.ae.W_dec
    W.grad = torch.randn_like(W) + 3 * W.detach()  # a large component along each row
    trainer._remove_parallel_decoder_grad()
    assert (W.grad * W.detach()).sum(1).abs().max() < 1e-5


def test_supervised_infonce_by_hand():
    # Two tiers, two identical profiles each, orthogonal across tiers: every anchor has one positive (cos 1)
    # and two negatives (cos 0): loss = -(1/T - log(e^(1/T) + 2)).
    profiles = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    tier = torch.tensor([0, 0, 1, 1])
    t = 0.5
    assert float(supervised_infonce(profiles, tier, t)) == pytest.approx(-(1 / t - math.log(math.exp(1 / t) + 2)))
    # Mixed-up tiers cost more than separated ones.
    mixed_up = torch.tensor([0, 1, 0, 1])
    assert float(supervised_infonce(profiles, mixed_up, t)) > float(supervised_infonce(profiles, tier, t))


def test_pooling_by_hand():
    # Sparse codes of 4 tokens over 3 latents (latent 2 never fires; zeros pad the rows).
    codes = SparseCodes(
        torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 0.0], [9.0, 9.0]]), torch.tensor([[0, 1], [0, 1], [1, 0], [0, 1]])
    )
    tier, eid = torch.tensor([1, 1, 0, -1]), torch.tensor([7, 7, 4, 5])
    profiles, ptier = pool_profiles(codes, tier, eid, "mean", 3)
    assert profiles.tolist() == [[0.0, 5.0, 0.0], [2.0, 1.0, 0.0]] and ptier.tolist() == [0, 1]  # ids sorted
    profiles, _ = pool_profiles(codes, tier, eid, "max", 3)
    assert profiles.tolist() == [[0.0, 5.0, 0.0], [3.0, 2.0, 0.0]]
    profiles, ptier = pool_profiles(codes, tier, eid, "token", 3)
    assert profiles.tolist() == [[1.0, 0.0, 0.0], [3.0, 2.0, 0.0], [0.0, 5.0, 0.0]] and ptier.tolist() == [1, 1, 0]


def test_contrastive_term_needs_both_tiers():
    trainer = ContrastiveTopKTrainer(**small_config())
    x = torch.randn(12, D)
    both = pack_labels(x, torch.tensor([0] * 6 + [1] * 6), torch.arange(12) // 3)
    one = pack_labels(x, 0, torch.arange(12) // 3)
    unlabelled = pack_labels(x, -1, torch.arange(12) // 3)
    with torch.no_grad():
        assert trainer.loss(both, logging=True).losses["contrastive_loss"] > 0
        for batch in (x, one, unlabelled):
            assert trainer.loss(batch, logging=True).losses["contrastive_loss"] == 0
        # Labels change only the contrastive term: the other losses see the same activations.
        plain, packed = trainer.loss(x, logging=True).losses, trainer.loss(both, logging=True).losses
        assert plain["recon_loss"] == packed["recon_loss"]


def test_auxk_revives_latents_that_never_win_the_top_k():
    # Half the latents start with encoder rows scaled by 0.01: they never reach the top-k, so without AuxK they
    # get no gradient and stay dead; AuxK trains them on the residual until they fire. The configured window
    # (10M tokens, Gao et al.) is longer than this whole run (76,800 tokens): the dead window scaled to the run
    # (10% of it) is what lets AuxK act at all.
    x, _, _ = synthetic(0, n_examples=400, n_atoms=128, tier_scale=0.0)
    held_out, _, _ = synthetic(50, n_examples=200, n_atoms=128, tier_scale=0.0)
    results = {}
    for alpha in (0.0, 1 / 32):
        trainer = ContrastiveTopKTrainer(
            **small_config(dict_size=128, auxk_alpha=alpha, dead_after_tokens=10_000_000, contrastive_weight=0.0)
        )
        with torch.no_grad():
            trainer.ae.W_enc[:, 64:] *= 0.01
        for step in range(300):
            start = (step * 256) % (len(x) - 256)
            trainer.update(step, x[start : start + 256])
        assert trainer.dead_after == 7680  # 0.1 * 300 steps * 256 tokens
        results[alpha] = (trainer.dead_fraction, evaluate_sae(trainer.ae, [held_out]))
    print({a: (d, round(m["dead_fraction"], 3), round(m["fve"], 3)) for a, (d, m) in results.items()})
    (dead_plain, plain), (dead_auxk, auxk) = results[0.0], results[1 / 32]
    assert dead_plain == 0.5 and plain["dead_fraction"] == 0.5
    assert dead_auxk < 0.05 and auxk["dead_fraction"] < 0.05
    assert auxk["fve"] > plain["fve"] + 0.05


def held_out_separation(sae, x, tier, eid):
    """Pick the latent whose mean-pooled activation best separates tiers on half the held-out examples; report its
    AUROC on the other half (oriented by the first half)."""
    with torch.no_grad():
        profiles, ptier = pool_profiles(sae.encode_sparse(x), tier, eid, "mean", sae.dict_size)
    profiles, ptier = profiles.numpy(), ptier.numpy().astype(bool)
    half = len(ptier) // 2
    fit = np.array([auroc(profiles[:half, j], ptier[:half]) for j in range(profiles.shape[1])])
    best = int(np.argmax(np.abs(fit - 0.5)))
    sign = 1.0 if fit[best] >= 0.5 else -1.0
    return auroc(sign * profiles[half:, best], ptier[half:])


def separations(seed: int, weight: float = 0.1, tier_scale: float = 1.0) -> dict[float, tuple[float, float]]:
    """{contrastive weight: (held-out best-latent AUROC, FVE)} for the plain SAE (weight 0) and the contrastive
    one, one seed (data draw, SAE init and batch order all follow it); ``tier_scale``: see ``synthetic``."""
    x, tier, eid = synthetic(100 + seed, tier_scale=tier_scale)
    xv, tv, ev = synthetic(200, n_examples=400, tier_scale=tier_scale)
    results = {}
    for w in (0.0, weight):
        trainer = ContrastiveTopKTrainer(**small_config(contrastive_weight=w, temperature=0.1, seed=seed))
        for step, act in zip(range(300), BalancedTierBatches(x, tier, eid, examples_per_tier=8, seed=seed)):
            trainer.update(step, act)
        results[w] = (held_out_separation(trainer.ae, xv, tv, ev), evaluate_sae(trainer.ae, [xv])["fve"])
    return results


def separation_gain(seed: int, weight: float = 0.1, tier_scale: float = 1.0) -> tuple[float, float]:
    """Held-out best-latent AUROC gain and FVE cost of the contrastive term over the plain SAE, one seed."""
    results = separations(seed, weight, tier_scale)
    return results[weight][0] - results[0.0][0], results[0.0][1] - results[weight][1]


def test_contrastive_term_improves_held_out_tier_separation():
    # One seed is a knife edge (a fresh machine once measured -0.005 where 0.1 was asserted): the claim is the
    # mean over seeds, with a 95% t-interval that excludes 0. Measured over 8 seeds (benchmarks/
    # contrastive_separation.py): gain 0.16-0.43, FVE cost 0.01-0.09.
    gains, costs = np.array([separation_gain(seed) for seed in range(4)]).T
    gain_ci = scipy.stats.ttest_1samp(gains, 0.0).confidence_interval(0.95)
    cost_ci = scipy.stats.ttest_1samp(costs, 0.0).confidence_interval(0.95)
    print(
        f"AUROC gain per seed {np.round(gains, 3)}, mean {gains.mean():.3f} [{gain_ci.low:.3f}, {gain_ci.high:.3f}]; "
        f"FVE cost {np.round(costs, 3)}, mean {costs.mean():.3f} [{cost_ci.low:.3f}, {cost_ci.high:.3f}]"
    )
    assert gain_ci.low > 0
    assert cost_ci.high < 0.15


def run_and_interrupt(batches, config, save_dir, interrupt_after):
    class Interrupted(Exception):
        pass

    def limited():
        for i, batch in enumerate(batches):
            if i == interrupt_after:
                raise Interrupted
            yield batch

    class Wrapped:  # forwards the stream's state so the checkpoint holds it
        def __iter__(self):
            return limited()

        def __getattr__(self, name):
            return getattr(batches, name)

    with pytest.raises(Interrupted):
        train_sae(Wrapped(), config, 12, save_dir, save_every=4)


@pytest.mark.parametrize("stateful", [True, False])
def test_resume_gives_the_same_weights(tmp_path, stateful):
    x, tier, eid = synthetic(3, n_examples=48)

    def make_batches():
        stream = BalancedTierBatches(x, tier, eid, examples_per_tier=3, seed=1)
        return stream if stateful else [b for _, b in zip(range(12), stream)]

    config = {
        "trainer": ContrastiveTopKTrainer,
        **small_config(steps=12, warmup_steps=3, decay_start=6, dead_after_tokens=100),
    }
    whole = train_sae(make_batches(), config, 12, tmp_path / "whole")
    run_and_interrupt(make_batches(), config, tmp_path / "resumed", interrupt_after=10)  # checkpoint at step 8
    assert torch.load(tmp_path / "resumed" / CHECKPOINT_NAME, weights_only=True)["step"] == 8
    assert not (tmp_path / "resumed" / MODEL_DIR).exists()
    resumed = train_sae(make_batches(), config, 12, tmp_path / "resumed")
    for name, p in whole.ae.named_parameters():
        assert torch.equal(p, getattr(resumed.ae, name)), name
    assert torch.equal(whole.tokens_since_fired, resumed.tokens_since_fired)
    assert whole.optimizer.param_groups[0]["lr"] == resumed.optimizer.param_groups[0]["lr"]
    # The final folder loads as the trained SAE, and the run config is recorded.
    final = Dictionary.from_pretrained(tmp_path / "resumed" / MODEL_DIR)
    assert isinstance(final, TopKSAE) and torch.equal(final.W_dec, whole.ae.W_dec)
    assert json.loads((tmp_path / "resumed" / CONFIG_NAME).read_text())["trainer"]["dict_size"] == 64
    # Without the resume, an interrupted run ends elsewhere: the equality above is not vacuous.
    fresh = train_sae(make_batches(), {**config, "seed": 1}, 12, tmp_path / "other", resume=False)
    assert not torch.equal(fresh.ae.W_dec, whole.ae.W_dec)


def test_resume_refuses_a_different_run(tmp_path):
    x, tier, eid = synthetic(3, n_examples=48)
    batches = BalancedTierBatches(x, tier, eid, examples_per_tier=3)
    train_sae(batches, {"trainer": ContrastiveTopKTrainer, **small_config(steps=4)}, 4, tmp_path)
    with pytest.raises(
        ValueError,
        match=r"checkpoint.pt: checkpoint belongs to a different run; "
        r"config differs in \['k'\]",
    ):
        train_sae(batches, {"trainer": ContrastiveTopKTrainer, **small_config(steps=4, k=8)}, 4, tmp_path)
