"""The fork's trainSAE output folders (``config.json`` with ``trainer`` + ``model_final.pt``), written here exactly
as the fork writes them (state dicts built by hand with its keys, shapes and dtypes): BatchTopKSAE, CrossCoder and
BatchTopKCrossCoder load, and encode/decode equal the fork's formulas computed by hand in float64."""

import json

import pytest
import torch

from cbd_plugin.sae import load_dictionary
from cbd_plugin.sae.crosscoder import FT_NORM_SHARE, BatchTopKCrossCoder, CrossCoder, FinetunedLatents

D, F, L, N = 6, 20, 2, 9
CODE_NORMS = {"CROSSCODER": 1, "SAE": 2, "MIXED": 3, "NONE": 4, "DECOUPLED": 5}


def normaliser(shape, normalised: bool, g) -> dict:
    """NormalizableMixin's buffers: NaN mean/std and unit scale without a normaliser."""
    if not normalised:
        return {
            "target_rms": torch.tensor(1.0),
            "activation_mean": torch.full(shape, float("nan")),
            "activation_std": torch.full(shape, float("nan")),
            "activation_global_scale": torch.ones(shape[:-1]),
        }
    mean, std = torch.randn(shape, generator=g), torch.rand(shape, generator=g) + 0.5
    return {
        "target_rms": torch.tensor(1.0),
        "activation_mean": mean,
        "activation_std": std,
        "activation_global_scale": 1.0 / torch.sqrt((std**2).sum(-1) + 1e-8),
    }


def crosscoder_state(batch_topk: bool, normalised: bool, code_norm: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {
        **normaliser((L, D), normalised, g),
        "code_normalization_id": torch.tensor(CODE_NORMS[code_norm]),
        "encoder.weight": torch.randn(L, D, F, generator=g),
        "encoder.bias": torch.randn(F, generator=g) * 0.5,
        "decoder.weight": torch.randn(L, F, D, generator=g),
        "decoder.bias": torch.randn(L, D, generator=g),
    }
    # Some latents write (almost) only to the fine-tuned model, some only to the base.
    state["decoder.weight"][0, :5] *= 0.05
    state["decoder.weight"][1, 5:8] *= 0.05
    if batch_topk:
        state.update(k=torch.tensor(3, dtype=torch.int32), threshold=torch.tensor(1.5))
    return state


def trainer_config(dict_class: str, code_norm: str = "CROSSCODER", **extra) -> dict:
    """The keys the fork's trainer.config writes (CrossCoderTrainer / BatchTopKCrossCoderTrainer / BatchTopKTrainer)."""
    return {
        "trainer_class": dict_class + "Trainer",
        "dict_class": dict_class,
        "activation_dim": D,
        "dict_size": F,
        "lr": 1e-4,
        "device": "cpu",
        "layer": 13,
        "lm_name": "google/gemma-2-2b",
        "wandb_name": "run",
        "submodule_name": "model.layers.13",
        "code_normalization": code_norm,
        "code_normalization_alpha_sae": 1.0,
        "code_normalization_alpha_cc": 0.1,
        "target_rms": 1.0,
        **extra,
    }


def write_run(folder, trainer: dict, state: dict):
    """trainSAE's save_dir: config.json ({"trainer": ..., "buffer": ...}) and model_final.pt (torch.save)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"d_submodule": D}}, indent=4))
    torch.save(state, folder / "model_final.pt")
    return folder


def reference_pre(state: dict, x: torch.Tensor) -> torch.Tensor:
    s = {k: v.double() for k, v in state.items() if v.is_floating_point()}
    x = x.double()
    if not s["activation_mean"].isnan().any():
        x = (x - s["activation_mean"]) * s["activation_global_scale"][None, :, None]
    f = sum(x[:, l] @ s["encoder.weight"][l] for l in range(L)) + s["encoder.bias"]
    return f.clamp_min(0)


def reference_code_norm(state: dict, code_norm: str) -> torch.Tensor:
    w = state["decoder.weight"].double()
    cc, sae = w.norm(dim=2).sum(0), w.norm(dim=(0, 2))
    return {"CROSSCODER": cc, "SAE": sae, "MIXED": 1.0 * sae + 0.1 * cc, "NONE": torch.ones(F, dtype=torch.float64)}[
        code_norm
    ]


def reference_decode(state: dict, f: torch.Tensor) -> torch.Tensor:
    s = {k: v.double() for k, v in state.items() if v.is_floating_point()}
    out = torch.einsum("bf,lfd->bld", f.double(), s["decoder.weight"]) + s["decoder.bias"]
    if not s["activation_mean"].isnan().any():
        out = out / (s["activation_global_scale"][None, :, None] + 1e-8) + s["activation_mean"]
    return out


@pytest.mark.parametrize("normalised", [False, True])
@pytest.mark.parametrize("code_norm", ["CROSSCODER", "SAE", "MIXED", "NONE"])
def test_batchtopk_crosscoder_encodes_as_the_fork(tmp_path, normalised, code_norm):
    state = crosscoder_state(True, normalised, code_norm)
    folder = write_run(tmp_path / "run", trainer_config("BatchTopKCrossCoder", code_norm, k=3), state)
    cc = load_dictionary(folder)
    assert isinstance(cc, BatchTopKCrossCoder) and (cc.num_layers, cc.activation_dim, cc.dict_size) == (L, D, F)
    assert cc.metadata == {"model_name": "google/gemma-2-2b", "hook_name": "blocks.13.hook_resid_post", "layer": 13}
    x = torch.randn(N, L, D, generator=torch.Generator().manual_seed(1)) * 2
    pre = reference_pre(state, x)
    scaled = pre * reference_code_norm(state, code_norm)
    with torch.no_grad():
        torch.testing.assert_close(cc.encode(x).double(), pre * (scaled > 1.5), rtol=1e-5, atol=1e-5)
        keep = torch.zeros(N * F, dtype=torch.bool)
        keep[scaled.flatten().topk(3 * N).indices] = True
        torch.testing.assert_close(
            cc.encode(x, use_threshold=False).double(), pre * keep.reshape(N, F), rtol=1e-5, atol=1e-5
        )
        f = cc.encode(x)
        torch.testing.assert_close(cc.decode(f).double(), reference_decode(state, f), rtol=1e-5, atol=1e-5)
        # The latents' share of decode is what removing them removes.
        zeroed = f.clone()
        zeroed[:, [2, 9]] = 0
        torch.testing.assert_close(cc.decode_latents(f, [2, 9]), cc.decode(f) - cc.decode(zeroed), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("normalised", [False, True])
def test_crosscoder_encodes_as_the_fork_and_the_file_path_loads_too(tmp_path, normalised):
    state = crosscoder_state(False, normalised, "CROSSCODER")
    folder = write_run(tmp_path / "run", trainer_config("CrossCoder"), state)
    x = torch.randn(N, L, D, generator=torch.Generator().manual_seed(2))
    for spec in (folder, folder / "model_final.pt"):
        cc = load_dictionary(spec, layer=13, d_model=D)
        assert type(cc) is CrossCoder
        with torch.no_grad():
            torch.testing.assert_close(cc.encode(x).double(), reference_pre(state, x), rtol=1e-5, atol=1e-5)


def test_fork_batchtopk_sae_trainsae_output_loads(tmp_path):
    g = torch.Generator().manual_seed(3)
    state = {
        **normaliser((D,), True, g),
        "k": torch.tensor(2, dtype=torch.int32),
        "threshold": torch.tensor(0.3),
        "decoder.weight": torch.randn(D, F, generator=g),
        "encoder.weight": torch.randn(F, D, generator=g),
        "encoder.bias": torch.randn(F, generator=g),
        "b_dec": torch.randn(D, generator=g),
    }
    trainer = {**trainer_config("BatchTopKSAE", k=2), "trainer_class": "BatchTopKTrainer"}
    sae = load_dictionary(write_run(tmp_path / "run", trainer, state))
    x = torch.randn(N, D, generator=g)
    s = {k: v.double() for k, v in state.items() if v.is_floating_point()}
    xn = (x.double() - s["activation_mean"]) * s["activation_global_scale"]
    pre = ((xn - s["b_dec"]) @ s["encoder.weight"].T + s["encoder.bias"]).clamp_min(0)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x).double(), pre * (pre > 0.3), rtol=1e-5, atol=1e-5)
    assert sae.metadata["hook_name"] == "blocks.13.hook_resid_post"


def test_unsupported_crosscoders_are_refused_by_name(tmp_path):
    state = crosscoder_state(True, False, "DECOUPLED")
    state["threshold"] = torch.tensor([1.0, 1.0])
    with pytest.raises(ValueError, match="DECOUPLED"):
        load_dictionary(write_run(tmp_path / "a", trainer_config("BatchTopKCrossCoder", "DECOUPLED", k=3), state))
    state = crosscoder_state(False, False, "SAE")
    with pytest.raises(ValueError, match="code_normalization_id"):
        load_dictionary(write_run(tmp_path / "b", trainer_config("CrossCoder", "CROSSCODER"), state))
    state = crosscoder_state(False, False, "CROSSCODER")
    state["encoder.weight"] = state["encoder.weight"][:1]
    with pytest.raises(ValueError, match="encoder_layers"):
        load_dictionary(write_run(tmp_path / "c", trainer_config("CrossCoder"), state))


def test_finetuned_latents_are_those_whose_finetuned_decoder_dominates(tmp_path):
    state = crosscoder_state(True, True, "CROSSCODER")
    cc = load_dictionary(write_run(tmp_path / "run", trainer_config("BatchTopKCrossCoder", k=3), state))
    norms = state["decoder.weight"].norm(dim=2)
    share = norms[1] / (norms[0] + norms[1])
    view = FinetunedLatents(cc)
    assert view.latent_ids.tolist() == torch.nonzero(share > FT_NORM_SHARE).squeeze(1).tolist() == [0, 1, 2, 3, 4]
    x = torch.randn(N, L, D, generator=torch.Generator().manual_seed(4)) * 2
    with torch.no_grad():
        f = view.encode(x)
        torch.testing.assert_close(f, cc.encode(x)[:, view.latent_ids])
        # decode_latents: the candidates' part of the fine-tuned residual (source 1) in the crosscoder's decode.
        torch.testing.assert_close(view.decode_latents(f, [1, 3]), cc.decode_latents(cc.encode(x), [1, 3])[:, 1])
    assert view.describe()["latent_ids"] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="no latent's fine-tuned decoder norm share"):
        FinetunedLatents(cc, threshold=0.999)
