"""Bad inputs, corrupt files and faults met through cbd_plugin.capture: one row per case, each asserting the error
type and that the message names the value, prompt, key or file at fault."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nnsight
import pytest
import torch
from test_capture import PROMPTS, SPECIALS, VOCAB, make_gemma, make_tokenizer
from transformers import Gemma2Config, Gemma2ForCausalLM

from cbd_plugin import capture as cap

IDENTITY = lambda ids, mask: lambda resid: resid  # noqa: E731


@pytest.fixture(scope="module")
def env():
    tokenizer = make_tokenizer([f"w{i}" for i in range(VOCAB - len(SPECIALS))])
    hf = make_gemma(0)
    broken = make_gemma(0)
    with torch.no_grad():
        broken.model.layers[1].mlp.down_proj.weight[0, 0] = torch.nan  # layer 0 stays finite, layer 1 does not
    wide = make_gemma(0)
    wide.config._name_or_path = "tiny-base"
    narrow_config = Gemma2Config(**{**wide.config.to_dict(), "hidden_size": 32, "_name_or_path": "tiny-narrow"})
    broken.config._name_or_path = "tiny-broken"
    return {
        "model": nnsight.LanguageModel(hf, tokenizer=tokenizer),
        "hf": hf,
        "nan_model": nnsight.LanguageModel(broken, tokenizer=tokenizer),
        "named": nnsight.LanguageModel(wide, tokenizer=tokenizer),
        "narrow": nnsight.LanguageModel(Gemma2ForCausalLM(narrow_config).eval(), tokenizer=tokenizer),
        "other": nnsight.LanguageModel(hf, tokenizer=make_tokenizer([f"w{i}" for i in reversed(range(95))])),
    }


@pytest.fixture
def shards(env, tmp_path):
    """A complete 4-shard capture (18 tokens, 5 per shard) in a fresh folder."""
    cap.write_shards(
        cap.iter_residuals(env["model"], PROMPTS, [0, 1], batch_size=2), tmp_path, model_ids=["tiny"], shard_tokens=5
    )
    return tmp_path


def _edit_manifest(folder, change):
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps(change(manifest)))


def _flip_byte(path, offset=-7):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _swap(a, b):
    tmp = a.with_name("swap")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)


def _read(folder, **kw):
    return cap.read_shards(folder, **kw)


# (case id, action(env), exception type, regex the message must match)
API_CASES = [
    (
        "layer-fraction",
        lambda e: cap.iter_residuals(e["model"], PROMPTS, [0, 1.7]),
        TypeError,
        r"layer 1\.7 is not an integer",
    ),
    (
        "layer-string",
        lambda e: cap.iter_residuals(e["model"], PROMPTS, ["2"]),
        TypeError,
        r"layer '2' is not an integer",
    ),
    (
        "layer-bool",
        lambda e: cap.iter_residuals(e["model"], PROMPTS, [True]),
        TypeError,
        r"layer True is not an integer",
    ),
    (
        "layer-too-deep",
        lambda e: cap.iter_residuals(e["model"], PROMPTS, [0, 3]),
        ValueError,
        r"layer 3 is out of range: the model has 3 layers",
    ),
    (
        "layer-negative",
        lambda e: cap.iter_residuals(e["model"], PROMPTS, [-1]),
        ValueError,
        r"layer -1 is out of range",
    ),
    ("layers-empty", lambda e: cap.iter_residuals(e["model"], PROMPTS, []), ValueError, r"layers is empty"),
    (
        "trace-layer-fraction",
        lambda e: cap.trace_residuals(e["model"], *cap.pad_left([[1, 5]]), [0.5]),
        TypeError,
        r"layer 0\.5 is not an integer",
    ),
    ("prompts-empty", lambda e: cap.iter_residuals(e["model"], [], [0]), ValueError, r"prompts is empty"),
    (
        "prompt-no-tokens",
        lambda e: cap.iter_residuals(e["model"], [[1, 5], []], [0]),
        ValueError,
        r"prompt 1 has no tokens",
    ),
    (
        "token-id-out-of-vocab",
        lambda e: cap.iter_residuals(e["model"], [[1, 120]], [0]),
        ValueError,
        r"prompt 0 has token ids outside \[0, 100\).*max 120",
    ),
    (
        "negative-token-id",
        lambda e: cap.iter_residuals(e["model"], [[1, -3]], [0]),
        ValueError,
        r"prompt 0 has token ids outside \[0, 100\).*min -3",
    ),
    (
        "prompt-past-positions",
        lambda e: cap.iter_residuals(e["model"], [[1, 5], [1] * 70], [0]),
        ValueError,
        r"prompt 1 has 70 tokens, more than the model's 64 positions",
    ),
    (
        "paired-prompt-past-positions",
        lambda e: cap.iter_paired_residuals(e["model"], e["model"], [[1] * 65], [0]),
        ValueError,
        r"prompt 0 has 65 tokens, more than the model's 64 positions",
    ),
    (
        "batch-size-zero",
        lambda e: cap.iter_residuals(e["model"], PROMPTS, [0], batch_size=0),
        ValueError,
        r"batch_size must be an integer >= 1, got 0",
    ),
    (
        "batch-size-fraction",
        lambda e: cap.iter_residuals(e["model"], PROMPTS, [0], batch_size=2.5),
        ValueError,
        r"batch_size must be an integer >= 1, got 2\.5",
    ),
    (
        "labels-wrong-length",
        lambda e: cap.iter_residuals(e["model"], PROMPTS, [0], labels={"group": [0, 1]}),
        ValueError,
        r"labels\['group'\] has 2 values for 4 prompts",
    ),
    (
        "labels-2d",
        lambda e: cap.iter_residuals(e["model"], PROMPTS, [0], labels={"g": [[0, 1]] * 4}),
        ValueError,
        r"labels\['g'\] has shape \(4, 2\)",
    ),
    (
        "token-labels-wrong-count",
        lambda e: cap.iter_residuals(e["model"], PROMPTS, [0], token_labels={"odd": [[0] * 8, [0], [0] * 5, [0] * 2]}),
        ValueError,
        r"token_labels\['odd'\]\[1\] has 1 values but prompt 1 has 3 tokens",
    ),
    (
        "label-reserved-name",
        lambda e: cap.iter_residuals(e["model"], PROMPTS, [0], labels={"position": [0] * 4}),
        ValueError,
        r"label name 'position' is reserved",
    ),
    (
        "model-makes-nan",
        lambda e: cap.capture_residuals(e["nan_model"], PROMPTS, [0, 1], batch_size=2),
        ValueError,
        r"layer 1 residuals hold NaN/Inf on 11 of 11 tokens, first at prompt 0 position 0",
    ),
    (
        "paired-model-makes-nan",
        lambda e: list(cap.iter_paired_residuals(e["model"], e["nan_model"], PROMPTS, [2], batch_size=4)),
        ValueError,
        r"fine-tuned model 'tiny-broken': weight 'model\.layers\.1\.mlp\.down_proj\.weight' holds 1 NaN/Inf "
        r"value\(s\) of 8192: the checkpoint is broken",
    ),
    (
        "paired-base-has-nan-weights",
        lambda e: cap.iter_paired_residuals(e["nan_model"], e["model"], PROMPTS, [0]),
        ValueError,
        r"base model 'tiny-broken': weight 'model\.layers\.1\.mlp\.down_proj\.weight' holds 1 NaN/Inf",
    ),
    (
        "paired-models-of-different-widths",
        lambda e: cap.iter_paired_residuals(e["named"], e["narrow"], PROMPTS, [0]),
        ValueError,
        r"base model 'tiny-base' has hidden size 64 but fine-tuned model 'tiny-narrow' has 32: a model diff needs",
    ),
    (
        "capture-nan-names-the-model",
        lambda e: cap.capture_residuals(e["nan_model"], PROMPTS, [1]),
        ValueError,
        r"model 'tiny-broken': layer 1 residuals hold NaN/Inf",
    ),
    (
        "paired-tokenizers-differ",
        lambda e: cap.iter_paired_residuals(e["model"], e["other"], PROMPTS, [0]),
        ValueError,
        r"base and fine-tuned tokenisations differ on prompt 0",
    ),
    (
        "string-prompts-plain-model",
        lambda e: cap.generate_greedy(e["hf"], PROMPTS, 2),
        ValueError,
        r"this model has no tokenizer",
    ),
    (
        "generate-layer-fraction",
        lambda e: cap.generate_greedy(e["model"], PROMPTS, 2, layer=1.7, make_edit=IDENTITY),
        TypeError,
        r"layer 1\.7 is not an integer",
    ),
    (
        "generate-layer-out-of-range",
        lambda e: cap.generate_greedy(e["model"], PROMPTS, 2, layer=-1, make_edit=IDENTITY),
        ValueError,
        r"layer -1 is out of range",
    ),
    (
        "generate-layer-without-edit",
        lambda e: cap.generate_greedy(e["model"], PROMPTS, 2, layer=1),
        ValueError,
        r"give both layer and make_edit",
    ),
    (
        "generate-two-edits",
        lambda e: cap.generate_greedy(
            e["model"], PROMPTS, 2, layer=1, make_edit=IDENTITY, edit=cap.LayerEdit(1, lambda r, b: r)
        ),
        ValueError,
        r"give edit or layer/make_edit",
    ),
    (
        "layer-edit-out-of-range",
        lambda e: cap.generate_greedy(e["model"], PROMPTS, 2, edit=cap.LayerEdit(5, lambda r, b: r)),
        ValueError,
        r"layer 5 is out of range: the model has 3 layers",
    ),
    (
        "edit-wrong-shape",
        lambda e: cap.generate_greedy(e["model"], PROMPTS, 2, edit=cap.LayerEdit(1, lambda r, b: r[..., :3])),
        ValueError,
        r"the edit at layer 1 returned torch\.Size\(\[4, 8, 3\]\) for a residual of shape \(4, 8, 64\)",
    ),
    (
        "edit-makes-nan",
        lambda e: cap.generate_greedy(e["model"], PROMPTS, 2, edit=cap.LayerEdit(1, lambda r, b: r * torch.nan)),
        ValueError,
        r"non-finite logits \(NaN/Inf\) in batch rows \[0, 1, 2, 3\]: the edit at layer 1",
    ),
    (
        "make-edit-makes-inf",
        lambda e: cap.generate_greedy(e["model"], PROMPTS, 2, layer=2, make_edit=lambda i, m: lambda r: r + torch.inf),
        ValueError,
        r"non-finite logits .*: the edit at layer 2",
    ),
    (
        "max-new-tokens-zero",
        lambda e: cap.generate_greedy(e["model"], PROMPTS, 0),
        ValueError,
        r"max_new_tokens must be an integer >= 1, got 0",
    ),
    (
        "generate-prompt-past-positions",
        lambda e: cap.generate_tokens(e["model"], [[1] * 66], 2),
        ValueError,
        r"prompt 0 has 66 tokens, more than the model's 64 positions",
    ),
    (
        "sampling-temperature-zero",
        lambda e: cap.Sampling(0.0),
        ValueError,
        r"temperature must be a finite number > 0, got 0\.0",
    ),
    ("sampling-temperature-negative", lambda e: cap.Sampling(-1.0), ValueError, r"temperature .* got -1\.0"),
    ("sampling-temperature-nan", lambda e: cap.Sampling(float("nan")), ValueError, r"temperature .* got nan"),
    (
        "sampling-n-samples-zero",
        lambda e: cap.Sampling(1.0, n_samples=0),
        ValueError,
        r"n_samples must be an integer >= 1, got 0",
    ),
    (
        "sampling-not-a-sampling",
        lambda e: cap.generate_sampled(e["model"], PROMPTS, 2, 0.7),
        TypeError,
        r"sampling must be a Sampling",
    ),
]


@pytest.mark.parametrize("action, error, message", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_bad_api_input(env, action, error, message):
    with pytest.raises(error, match=message):
        action(env)


def test_generation_past_the_positions_warns_naming_the_prompt(env):
    with pytest.warns(UserWarning, match=r"prompt 1 \(60 tokens\) \+ max_new_tokens 8 runs past the model's 64"):
        cap.generate_tokens(env["model"], [[1, 5], [1] * 60], 8)


# (case id, fault applied to a complete 4-shard folder, reader, exception type, regex; FOLDER stands for its path)
SHARD_CASES = [
    (
        "interrupted-no-manifest",
        lambda d: (d / "manifest.json").unlink(),
        _read,
        FileNotFoundError,
        r"FOLDER: no manifest\.json",
    ),
    (
        "manifest-not-json",
        lambda d: (d / "manifest.json").write_text('{"format": "cbd'),
        _read,
        ValueError,
        r"FOLDER/manifest\.json: not valid JSON",
    ),
    (
        "manifest-empty",
        lambda d: (d / "manifest.json").write_text(""),
        _read,
        ValueError,
        r"FOLDER/manifest\.json: not valid JSON",
    ),
    (
        "manifest-json-list",
        lambda d: (d / "manifest.json").write_text("[1, 2]"),
        _read,
        ValueError,
        r"FOLDER/manifest\.json: expected a JSON object",
    ),
    (
        "manifest-not-utf8",
        lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe{}"),
        _read,
        ValueError,
        r"FOLDER/manifest\.json: not UTF-8",
    ),
    (
        "manifest-wrong-format",
        lambda d: _edit_manifest(d, lambda m: m | {"format": "other/1"}),
        _read,
        ValueError,
        r"FOLDER/manifest\.json: format 'other/1'",
    ),
    (
        "manifest-no-shards",
        lambda d: _edit_manifest(d, lambda m: {k: v for k, v in m.items() if k != "shards"}),
        _read,
        ValueError,
        r"FOLDER/manifest\.json: key 'shards' must be",
    ),
    (
        "manifest-layers-fraction",
        lambda d: _edit_manifest(d, lambda m: m | {"layers": [0, 1.5]}),
        _read,
        ValueError,
        r"FOLDER/manifest\.json: key 'layers' must be a non-empty list of integers",
    ),
    (
        "manifest-model-ids-string",
        lambda d: _edit_manifest(d, lambda m: m | {"model_ids": "tiny"}),
        _read,
        ValueError,
        r"key 'model_ids' must be a non-empty list of strings",
    ),
    (
        "manifest-shard-no-sha256",
        lambda d: _edit_manifest(
            d, lambda m: m | {"shards": [{k: v for k, v in s.items() if k != "sha256"} for s in m["shards"]]}
        ),
        _read,
        ValueError,
        r"FOLDER/manifest\.json: shards\[0\] must be \{file, n_tokens >= 1, sha256\}",
    ),
    (
        "manifest-shard-path-escape",
        lambda d: _edit_manifest(
            d, lambda m: m | {"shards": [m["shards"][0] | {"file": "../x.safetensors"}, *m["shards"][1:]]}
        ),
        _read,
        ValueError,
        r"shards\[0\]\.file '\.\./x\.safetensors' must be a file name inside the folder",
    ),
    (
        "manifest-total-mismatch",
        lambda d: _edit_manifest(d, lambda m: m | {"n_tokens": 17}),
        _read,
        ValueError,
        r"key 'n_tokens' must be the sum of the shards' n_tokens \(18\)",
    ),
    (
        "shard-count-mismatch",
        lambda d: _edit_manifest(
            d,
            lambda m: (
                m | {"n_tokens": 19, "shards": [*m["shards"][:1], m["shards"][1] | {"n_tokens": 6}, *m["shards"][2:]]}
            ),
        ),
        _read,
        ValueError,
        r"FOLDER/shard_00001\.safetensors: token count differs from the 6",
    ),
    (
        "shard-missing",
        lambda d: (d / "shard_00002.safetensors").unlink(),
        _read,
        FileNotFoundError,
        r"FOLDER/shard_00002\.safetensors: listed in manifest\.json but missing",
    ),
    (
        "shard-flipped-byte",
        lambda d: _flip_byte(d / "shard_00001.safetensors"),
        _read,
        ValueError,
        r"FOLDER/shard_00001\.safetensors: sha256 .* differs .* corrupt, truncated or was changed",
    ),
    (
        "shard-flipped-header-byte",
        lambda d: _flip_byte(d / "shard_00000.safetensors", 20),
        _read,
        ValueError,
        r"FOLDER/shard_00000\.safetensors: sha256 .* differs",
    ),
    (
        "shard-truncated",
        lambda d: (d / "shard_00003.safetensors").write_bytes((d / "shard_00003.safetensors").read_bytes()[:100]),
        _read,
        ValueError,
        r"FOLDER/shard_00003\.safetensors: sha256 .* differs",
    ),
    (
        "shard-truncated-unverified",
        lambda d: (d / "shard_00003.safetensors").write_bytes((d / "shard_00003.safetensors").read_bytes()[:100]),
        lambda d: _read(d, verify=False),
        ValueError,
        r"FOLDER/shard_00003\.safetensors: unreadable shard, truncated or corrupt",
    ),
    (
        "shard-empty-file",
        lambda d: (d / "shard_00000.safetensors").write_bytes(b""),
        _read,
        ValueError,
        r"FOLDER/shard_00000\.safetensors: sha256 .* differs",
    ),
    (
        "shards-swapped",
        lambda d: _swap(d / "shard_00000.safetensors", d / "shard_00001.safetensors"),
        _read,
        ValueError,
        r"FOLDER/shard_00000\.safetensors: .* holds the content recorded for shard_00001\.safetensors "
        r"\(shards swapped",
    ),
    (
        "layer-not-captured",
        lambda d: None,
        lambda d: _read(d, layers=[2]),
        ValueError,
        r"FOLDER: layers \[2\] were not captured \(have \[0, 1\]\)",
    ),
    (
        "iter-shards-eager-check",
        lambda d: (d / "manifest.json").unlink(),
        lambda d: cap.iter_shards(d),
        FileNotFoundError,
        r"FOLDER: no manifest\.json",
    ),
]


@pytest.mark.parametrize("fault, reader, error, message", [c[1:] for c in SHARD_CASES], ids=[c[0] for c in SHARD_CASES])
def test_bad_shard_folder(shards, fault, reader, error, message):
    fault(shards)
    with pytest.raises(error, match=message.replace("FOLDER", re.escape(str(shards)))):
        reader(shards)


WRITER_CASES = [
    ("shard-tokens-zero", dict(shard_tokens=0), ValueError, r"shard_tokens must be an integer >= 1, got 0"),
    ("shard-tokens-fraction", dict(shard_tokens=2.5), ValueError, r"shard_tokens must be an integer >= 1, got 2\.5"),
    ("model-ids-string", dict(model_ids="tiny"), ValueError, r"model_ids must be a non-empty list of strings"),
    ("model-ids-empty", dict(model_ids=[]), ValueError, r"model_ids must be a non-empty list of strings"),
    ("streams-vs-model-ids", dict(model_ids=["base", "ft"]), ValueError, r"batch has 1 streams but model_ids names 2"),
]


@pytest.mark.parametrize("kw, error, message", [c[1:] for c in WRITER_CASES], ids=[c[0] for c in WRITER_CASES])
def test_bad_writer_arguments(env, tmp_path, kw, error, message):
    with pytest.raises(error, match=message):
        cap.write_shards(cap.iter_residuals(env["model"], PROMPTS, [0]), tmp_path, **({"model_ids": ["tiny"]} | kw))
    assert not (tmp_path / "manifest.json").exists()  # nothing reads as complete


def test_no_batches_writes_nothing_complete(tmp_path):
    with pytest.raises(ValueError, match=f"{re.escape(str(tmp_path))}: nothing was written"):
        cap.write_shards([], tmp_path, model_ids=["tiny"])
    assert not (tmp_path / "manifest.json").exists()


def test_killed_writers_temporaries_are_cleaned(env, shards):
    dead = shards.parent / f".{shards.name}.tmp-999999999-abcdef01"  # a killed capture's folder: no such process
    dead_old = shards.parent / f".{shards.name}.old-999999998-abcdef02"
    live = shards.parent / f".{shards.name}.tmp-{os.getppid()}-abcdef03"  # a writer still running
    for path in (dead, dead_old, live):
        path.mkdir()
        (path / "shard_00000.safetensors").write_bytes(b"partial")
    cap.write_shards(cap.iter_residuals(env["model"], PROMPTS, [0]), shards, model_ids=["tiny"], shard_tokens=5)
    assert not dead.exists() and not dead_old.exists() and live.exists()
    assert not [p.name for p in shards.iterdir() if p.name.startswith(".")]
    assert len(cap.read_shards(shards)) == 18


def _failing_at(n_good: int, env):
    for i, batch in enumerate(cap.iter_residuals(env["model"], PROMPTS, [0], batch_size=1)):
        if i == n_good:
            raise RuntimeError("capture failed")
        yield batch


@pytest.mark.parametrize("n_good", [0, 2])
def test_failed_recapture_keeps_the_earlier_capture(env, shards, n_good):
    before = {p.name: p.read_bytes() for p in shards.iterdir()}
    with pytest.raises(RuntimeError, match="capture failed"):
        cap.write_shards(_failing_at(n_good, env), shards, model_ids=["tiny"], shard_tokens=5)
    assert {p.name: p.read_bytes() for p in shards.iterdir()} == before
    assert [p.name for p in shards.parent.iterdir() if p.name.startswith(f".{shards.name}.")] == []
    assert len(cap.read_shards(shards)) == 18


def test_recapture_replaces_the_shards_and_keeps_other_files(env, shards):
    (shards / "NOTES.md").write_text("mine")
    cap.write_shards(cap.iter_residuals(env["model"], PROMPTS, [0]), shards, model_ids=["tiny"], shard_tokens=9)
    assert sorted(p.name for p in shards.iterdir()) == [
        "NOTES.md",
        "manifest.json",
        "shard_00000.safetensors",
        "shard_00001.safetensors",
    ]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("my notes"), r"FOLDER: exists and is a file, not a capture \(shard\) folder; refusing"),
        (
            lambda p: p.mkdir() or (p / "thesis.tex").write_text("x"),
            r"FOLDER: holds \['thesis.tex'\] and is not a capture \(shard\) folder; refusing to write into it",
        ),
    ],
)
def test_capture_onto_something_else_is_refused(env, tmp_path, make, message):
    target = tmp_path / "out"
    make(target)
    before = target.read_bytes() if target.is_file() else (target / "thesis.tex").read_bytes()
    with pytest.raises(FileExistsError, match=message.replace("FOLDER", re.escape(str(target)))):
        cap.write_shards(cap.iter_residuals(env["model"], PROMPTS, [0]), target, model_ids=["tiny"])
    assert (target.read_bytes() if target.is_file() else (target / "thesis.tex").read_bytes()) == before


def test_second_writer_of_the_same_folder_fails_at_once(env, tmp_path):
    first = cap.ShardWriter(tmp_path / "out", ["tiny"])
    try:
        script = f"import cbd_plugin.capture as cap\ncap.ShardWriter({str(tmp_path / 'out')!r}, ['tiny'])"
        second = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[2]
        )
    finally:
        first.abort()
    assert second.returncode != 0
    assert re.search(
        rf"OutputBusyError: {re.escape(str(tmp_path / 'out'))}: another process is writing it \(pid "
        rf"{os.getpid()} on .*, started 20",
        second.stderr,
    )


def test_manifest_records_a_checksum_per_shard(shards):
    manifest = cap.read_manifest(shards)
    assert manifest["format"] == cap.SHARD_FORMAT
    digests = [s["sha256"] for s in manifest["shards"]]
    assert len(set(digests)) == 4 and all(re.fullmatch(r"[0-9a-f]{64}", d) for d in digests)


def test_folder_written_before_checksums_reads_with_a_warning(shards):
    _edit_manifest(
        shards,
        lambda m: (
            m
            | {
                "format": "cbd_plugin.capture.shards/1",
                "shards": [{k: v for k, v in s.items() if k != "sha256"} for s in m["shards"]],
            }
        ),
    )
    with pytest.warns(UserWarning, match=r"manifest\.json: written before shard checksums"):
        got = cap.read_shards(shards)
    assert len(got) == 18 and torch.isfinite(got.acts[0]).all()
