"""Hub ids pin a revision (``owner/name@rev`` or ``revision=``), offline, on a hub-cache layout built here; the
loaded SAE's ``origin`` records the repo, the requested and the resolved revision and the file."""

import pytest
import torch
from huggingface_hub import constants

from cbd_plugin.provenance import sae_provenance
from cbd_plugin.sae import TopKSAE, load_dictionary
from cbd_plugin.sae.hub import is_hub_id, parse_hub_spec

D, DICT = 8, 24
OLD, NEW = "1" * 40, "2" * 40
REPO = "someone/diff-saes"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """``refs/main`` -> NEW and tag ``v1`` -> OLD, each snapshot with a ``layer_3`` plugin folder of its own SAE."""
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    repo = cache / f"models--{REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(NEW)
    (repo / "refs" / "v1").write_text(OLD)  # the cache stores every named revision as refs/<name>
    saes = {}
    for seed, commit in enumerate((OLD, NEW)):
        saes[commit] = TopKSAE(D, DICT, 4, generator=torch.Generator().manual_seed(seed))
        saes[commit].save_pretrained(repo / "snapshots" / commit / "layer_3")
    return saes


def test_revision_forms_parse():
    spec = parse_hub_spec("owner/name@v1.0/layer_20/width_16k")
    assert (spec.repo_id, spec.revision, spec.path, str(spec)) == (
        "owner/name",
        "v1.0",
        "layer_20/width_16k",
        "owner/name@v1.0/layer_20/width_16k",
    )
    spec = parse_hub_spec(f"owner/name@{OLD}:dir/sae_weights.pt")
    assert (spec.repo_id, spec.revision, spec.path, spec.is_file) == ("owner/name", OLD, "dir/sae_weights.pt", True)
    assert parse_hub_spec("owner/name", revision="refs/pr/1").revision == "refs/pr/1"
    assert parse_hub_spec("owner/name").revision is None
    assert is_hub_id("owner/name@v1") and is_hub_id("owner/name@v1/sub:file.pt")
    with pytest.raises(ValueError, match="pins revision 'v1' but revision='v2'"):
        parse_hub_spec("owner/name@v1", revision="v2")


@pytest.mark.parametrize(
    "spec, revision, commit",
    [
        (REPO, None, NEW),
        (f"{REPO}@main", None, NEW),
        (f"{REPO}@v1", None, OLD),
        (REPO, "v1", OLD),
        (f"{REPO}@{OLD}", None, OLD),
        (f"{REPO}@{OLD}:layer_3/config.json", None, OLD),
    ],
)
def test_each_form_loads_the_pinned_snapshot(hub, spec, revision, commit):
    sae = load_dictionary(spec, layer=3, revision=revision)
    x = torch.randn(5, D)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), hub[commit].encode(x))
    assert sae.origin["hub_id"] == REPO and sae.origin["revision"] == commit
    assert sae.origin["path_in_repo"] == "layer_3/model.safetensors"
    block = sae_provenance(sae)
    assert (block["hub_id"], block["revision"], block["file"]) == (REPO, commit, "layer_3/model.safetensors")
    assert block["requested_revision"] == (revision or (spec.split("@")[1].split(":")[0] if "@" in spec else None))


def test_unknown_revision_and_local_path_revision_are_named(hub, tmp_path):
    with pytest.raises(FileNotFoundError, match="at revision 'v9'.*--revision v9"):
        load_dictionary(f"{REPO}@v9", layer=3)
    TopKSAE(D, DICT, 4).save_pretrained(tmp_path / "local")
    with pytest.raises(ValueError, match="applies to hub ids"):
        load_dictionary(tmp_path / "local", revision="v1")
