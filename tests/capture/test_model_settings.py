"""ModelSettings: dtype, device_map="auto" with CPU and disk offload, and nnsight's local simulation of NDIF."""

import nnsight
import pytest
import torch
from family_models import VOCAB, build_family
from test_capture import SPECIALS, make_tokenizer

from cbd_plugin import capture as cap

PROMPTS = [[1, 7, 9, 11, 13, 15, 17], [1, 20], [1, 30, 31, 32, 33]]
LAYERS = [0, 1, 2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A random-weight Llama saved with a tokenizer, as a hub snapshot would be."""
    path = tmp_path_factory.mktemp("llama")
    build_family("llama").save_pretrained(path)
    make_tokenizer([f"w{i}" for i in range(VOCAB - len(SPECIALS))]).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def plain(folder):
    return cap.load_language_model(str(folder))


def max_diff(a: cap.TokenActivations, b: cap.TokenActivations) -> float:
    return max(float((a.acts[l] - b.acts[l]).abs().max()) for l in a.acts)


def test_default_settings_are_recorded(plain):
    assert cap.model_record(plain) == {"dtype": "float32", "device_map": "cpu", "remote": False}


def test_bfloat16_model_gives_float32_residuals(folder, plain):
    model = cap.load_language_model(str(folder), cap.ModelSettings(dtype="bfloat16"))
    assert cap.model_record(model)["dtype"] == "bfloat16"
    got, want = (cap.capture_residuals(m, PROMPTS, LAYERS) for m in (model, plain))
    assert all(a.dtype == torch.float32 for a in got.acts.values())
    scale = max(float(a.abs().max()) for a in want.acts.values())
    assert 0 < max_diff(got, want) <= 0.05 * scale  # bf16 rounding, no more


def test_device_map_auto_offloads_to_cpu_and_disk(folder, plain, tmp_path):
    """A max_memory below the model's size puts some blocks on disk; capture and generation are unchanged."""
    settings = cap.ModelSettings(device_map="auto", max_memory={"cpu": "100KB"}, offload_folder=str(tmp_path))
    model = cap.load_language_model(str(folder), settings)
    placed = cap.model_record(model)["device_map"]
    assert {"cpu", "disk"} <= set(placed.values()), placed
    assert max_diff(cap.capture_residuals(model, PROMPTS, LAYERS), cap.capture_residuals(plain, PROMPTS, LAYERS)) == 0
    assert cap.generate_tokens(model, PROMPTS, 5) == cap.generate_tokens(plain, PROMPTS, 5)


def test_remote_capture_through_nnsight_local_simulation(folder, plain):
    """remote='local' runs the trace through nnsight's LocalSimulationBackend: it pickles the request and unpickles
    it with only NDIF's server modules importable, as NDIF would; the residuals equal a local capture."""
    model = cap.load_language_model(str(folder), cap.ModelSettings(remote="local"))
    assert cap.model_record(model)["device_map"] == "ndif local simulation"
    assert max_diff(cap.capture_residuals(model, PROMPTS, LAYERS), cap.capture_residuals(plain, PROMPTS, LAYERS)) == 0
    with pytest.raises(ValueError, match="generation runs the model locally"):
        cap.generate_tokens(model, PROMPTS, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dtype": "float64"}, "dtype='float64'"),
        ({"remote": "yes"}, "remote='yes'"),
        ({"max_memory": {"cpu": "1GB"}}, "only with device_map='auto'"),
    ],
)
def test_bad_settings_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cap.ModelSettings(**kwargs)


def test_plain_nnsight_model_has_no_settings_but_a_record():
    model = nnsight.LanguageModel(build_family("gpt2"))
    assert cap.model_record(model) == {"dtype": "float32", "device_map": "cpu", "remote": False}


def test_settings_by_keyword_and_torch_dtype(folder):
    model = cap.load_language_model(str(folder), dtype=torch.bfloat16)
    assert cap.model_record(model)["dtype"] == "bfloat16"
    assert cap.ModelSettings(dtype=torch.float16).dtype == "float16"
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['device'\]"):
        cap.load_language_model(str(folder), device="cpu")
