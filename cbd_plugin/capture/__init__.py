"""Residual-stream capture, shards on disk and generation, shared by both methods.

* :mod:`.layers`: the decoder blocks of any decoder-only architecture (a table of paths per family, a fallback
  search, one clear error otherwise), for plain nnsight, the host's nnterp and transformers models.
* :mod:`.models`: loading (:class:`ModelSettings`: dtype, device map, offload, NDIF remote), token ids, padding.
* :mod:`.residuals`: decoder-layer outputs at any set of layers, for one model or a base/fine-tuned pair on the
  same tokens, padding dropped, per-token metadata (``prompt_id``, ``position``, ``token_id``, labels).
* :mod:`.rows`: token residuals in an anonymous temporary file (:class:`TokenRows`), read back by row range.
* :mod:`.shards`: bounded-memory streaming of captures to safetensors shards, sha256-checked, manifest last.
* :mod:`.generation`: greedy and seeded sampled generation with a KV cache, optionally editing one layer's
  residual with a reference model stepped in lockstep.
"""

from .generation import (
    END_OF_TURN,
    Edit,
    LayerEdit,
    MakeEdit,
    Sampling,
    generate_greedy,
    generate_sampled,
    generate_tokens,
    stop_token_ids,
)
from .layers import LAYER_PATHS, UnsupportedModelError, num_layers
from .models import ModelSettings, Prompts, check_model_pair, load_language_model, model_record, pad_left
from .residuals import TokenActivations, capture_residuals, iter_paired_residuals, iter_residuals, trace_residuals
from .rows import TokenRows
from .shards import MANIFEST, SHARD_FORMAT, ShardWriter, iter_shards, read_manifest, read_shards, write_shards

__all__ = [
    "END_OF_TURN",
    "LAYER_PATHS",
    "MANIFEST",
    "SHARD_FORMAT",
    "Edit",
    "LayerEdit",
    "MakeEdit",
    "ModelSettings",
    "Prompts",
    "Sampling",
    "ShardWriter",
    "TokenActivations",
    "TokenRows",
    "UnsupportedModelError",
    "capture_residuals",
    "check_model_pair",
    "generate_greedy",
    "generate_sampled",
    "generate_tokens",
    "iter_paired_residuals",
    "iter_residuals",
    "iter_shards",
    "load_language_model",
    "model_record",
    "num_layers",
    "pad_left",
    "read_manifest",
    "read_shards",
    "stop_token_ids",
    "trace_residuals",
    "write_shards",
]
