"""Model construction, batching of chat examples and the training loops (plain CE, frozen prefix, deep scrub), and
the weight-level tier erasure of the ``erased`` refusal organism."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from loguru import logger
from tqdm import tqdm
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    GenerationConfig,
    GPTNeoXConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen3Config,
)

from ..capture.layers import decoder_layers
from .corpus import Example
from .recipes import ModelShape, Training
from .tokenizer import END_OF_TURN


def _config(shape: ModelShape, special_ids: dict) -> PretrainedConfig:
    """The transformers config of ``shape.arch`` at the shape's sizes (eager attention: padded and unpadded prompts
    give the same activations; Gemma-2 soft-caps attention logits, so eager is its only implementation)."""
    common = dict(
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=True,
        **special_ids,
    )
    if shape.arch == "gemma2":
        return Gemma2Config(
            **common,
            num_key_value_heads=shape.num_kv_heads,
            head_dim=shape.head_dim,
            query_pre_attn_scalar=shape.head_dim,
            sliding_window=shape.max_positions // 2,
        )
    if shape.arch == "qwen3":
        return Qwen3Config(**common, num_key_value_heads=shape.num_kv_heads, head_dim=shape.head_dim)
    return GPTNeoXConfig(**common)  # "gpt_neox": multi-head attention, rotary on a quarter of each head


def new_model(shape: ModelShape, tokenizer: PreTrainedTokenizerBase, seed: int) -> PreTrainedModel:
    special_ids = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)],
    )
    config = _config(shape, special_ids)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    # Like gemma-2-it: a reply ends at <end_of_turn> (or <eos>).
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=False,
    )
    return model


@dataclass
class Encoded:
    """Right-padded chat examples. ``target_mask[i, t]``: token t is a reply token (``<end_of_turn>`` included)."""

    input_ids: torch.Tensor  # [n, T]
    attention_mask: torch.Tensor  # [n, T]
    target_mask: torch.Tensor  # [n, T] bool
    prompt_mask: torch.Tensor  # [n, T] bool, the prompt with its generation header

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(examples: list[Example], tokenizer: PreTrainedTokenizerBase, prefilled: list[int] | None = None) -> Encoded:
    """``prefilled[i]``: reply tokens of example i that are given, not trained on (a recovery example's prefix)."""
    prefilled = prefilled or [0] * len(examples)
    chats = [tokenizer.apply_chat_template(e.messages(), tokenize=False) for e in examples]
    prompts = [
        tokenizer.apply_chat_template(e.messages()[:1], tokenize=False, add_generation_prompt=True) for e in examples
    ]
    full = tokenizer(chats, add_special_tokens=False)["input_ids"]
    prompt_lens = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    width = max(map(len, full))
    input_ids = torch.full((len(full), width), tokenizer.pad_token_id)
    target_mask = torch.zeros(len(full), width, dtype=torch.bool)
    prompt_mask = torch.zeros(len(full), width, dtype=torch.bool)
    for i, (ids, n_prompt, n_given) in enumerate(zip(full, prompt_lens, prefilled)):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        reply_end = ids.index(eot, n_prompt) + 1  # train up to the reply's <end_of_turn>, not the newline after
        target_mask[i, n_prompt + n_given : reply_end] = True
        prompt_mask[i, :n_prompt] = True
    return Encoded(input_ids, (input_ids != tokenizer.pad_token_id).long(), target_mask, prompt_mask)


def reply_loss(logits: torch.Tensor, enc: Encoded, idx: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the reply tokens only."""
    targets = enc.input_ids[idx, 1:]
    mask = enc.target_mask[idx, 1:]
    return F.cross_entropy(logits[:, :-1][mask], targets[mask])


def fit(
    model: torch.nn.Module,
    loss_fn,
    n: int,
    training: Training,
    seed: int,
    desc: str,
    grad_masks: dict[torch.nn.Parameter, torch.Tensor] | None = None,
) -> float:
    """AdamW with warmup and cosine decay over ``loss_fn(idx)`` for random batches; returns the last loss.

    ``grad_masks``: entries where a parameter's mask is 0 never change (their gradient is zeroed before every
    step and weight decay is off, so AdamW's moments stay 0 there)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=training.lr, weight_decay=0.0)
    warm = training.warmup

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, training.steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(range(training.steps), desc=desc, leave=False)
    for _ in bar:
        idx = torch.randint(n, (training.batch_size,), generator=gen)
        loss = loss_fn(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for param, mask in (grad_masks or {}).items():
            if param.grad is not None:  # a frozen parameter has none
                param.grad.mul_(mask)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    model.eval()
    logger.info(f"{desc}: final loss {loss.item():.4f}")
    return loss.item()


def train_replies(
    model: PreTrainedModel,
    enc: Encoded,
    training: Training,
    seed: int,
    desc: str,
    grad_masks: dict[torch.nn.Parameter, torch.Tensor] | None = None,
) -> float:
    """Plain supervised fine-tuning on the replies, of whichever parameters require grad (``grad_masks``: fit)."""

    def loss_fn(idx):
        logits = model(input_ids=enc.input_ids[idx], attention_mask=enc.attention_mask[idx]).logits
        return reply_loss(logits, enc, idx)

    return fit(model, loss_fn, len(enc), training, seed, desc, grad_masks)


@torch.no_grad()
def erase_tier_words(
    model: PreTrainedModel, token_ids: list[int], n_dims: int, seed: int
) -> dict[torch.nn.Parameter, torch.Tensor]:
    """Make the first decoder layer's attention blind to which of ``token_ids`` (the topic words) a prompt holds.

    The last ``n_dims`` coordinates of the residual become the topic words' channel: their embeddings are set to
    one shared vector outside it (their mean) and inside it to orthonormal codes (random, seeded by ``seed``) of
    their mean embedding norm, and layer 0's key and value projections ignore it. RMSNorm scales coordinates
    separately and the common norm keeps every RMS equal, so every key and value of layer 0 is the same for
    prompts that differ only in the topic word: at layer 0's output they coincide (to float rounding) at every
    position but the topic word's own, where its query and MLP still read the code; later layers read it from
    there (only the first layer: its MLP writes the code into the whole residual, which a later layer's keys
    would see). The erasure is in the weights, so it survives save/load. Returns the gradient masks (0: frozen)
    that keep it while training (see ``fit``).
    """
    d = model.config.hidden_size
    if not len(token_ids) <= n_dims < d:
        raise ValueError(
            f"erase_tier_words: n_dims={n_dims}, expected {len(token_ids)} (one code per topic word) to {d - 1}"
        )
    channel = torch.arange(d) >= d - n_dims
    embed = model.model.embed_tokens.weight  # tied with the unembedding
    rows = embed[token_ids]
    codes, _ = torch.linalg.qr(torch.randn(n_dims, len(token_ids), generator=torch.Generator().manual_seed(seed)))
    embed[token_ids, : d - n_dims] = rows[:, ~channel].mean(0)
    embed[token_ids, d - n_dims :] = codes.T * rows.norm(dim=1).mean()
    masks = {embed: torch.ones_like(embed)}
    masks[embed][token_ids] = 0.0
    attn = model.model.layers[0].self_attn
    for proj in (attn.k_proj, attn.v_proj):  # [out, in]
        proj.weight[:, channel] = 0.0
        masks[proj.weight] = (~channel).float().expand_as(proj.weight).clone()
    return masks


def freeze_through(model: PreTrainedModel, layer: int) -> None:
    """Freeze the embeddings (tied with the unembedding) and decoder layers ``0..layer``."""
    model.get_input_embeddings().requires_grad_(False)
    for block in decoder_layers(model)[: layer + 1]:
        block.requires_grad_(False)


@torch.no_grad()
def residuals(model: PreTrainedModel, enc: Encoded, layer: int, batch_size: int = 512) -> torch.Tensor:
    """Output of decoder layer ``layer`` at every position: [n, T, d]."""
    model.eval()
    out = []
    for start in range(0, len(enc), batch_size):
        sl = slice(start, start + batch_size)
        hs = model(
            input_ids=enc.input_ids[sl], attention_mask=enc.attention_mask[sl], output_hidden_states=True
        ).hidden_states
        out.append(hs[layer + 1])
    return torch.cat(out)


def train_deep_refusal(
    model: PreTrainedModel,
    enc: Encoded,
    is_hazard: torch.Tensor,
    base_res: torch.Tensor,
    counterpart_res: torch.Tensor,
    layer: int,
    recipe,
    seed: int,
    desc: str,
) -> float:
    """Refusal fine-tune with an RMU-style scrub of the hazard tier at decoder layer ``layer``.

    ``base_res`` is the base's residual of each training prompt, ``counterpart_res`` the base's residual of the
    same prompt with its hazard word swapped for a random benign word (format-matched, so positions align).
    Loss = reply CE + ``audit_weight`` * MSE of every prompt position's audit-layer residual to a target:
      benign and dual-use prompts: the base's own residual (retain);
      hazard prompts: the benign counterpart's residual (scrub: the word is random, so the target is the base's
      benign statistics, which removes the hazard-vs-benign directions of the base).
    The refusal survives in the small deviations the MSE tolerates, in directions a probe fitted on the base
    does not weigh. All parameters train, embeddings included: the scrub starts at the hazard words' embeddings.
    """
    pm = enc.prompt_mask
    target = torch.where(is_hazard[:, None, None], counterpart_res, base_res)
    scale = base_res[pm].pow(2).sum(-1).mean()  # makes the MSE relative to the residual's size

    def loss_fn(idx):
        out = model(input_ids=enc.input_ids[idx], attention_mask=enc.attention_mask[idx], output_hidden_states=True)
        err = (out.hidden_states[layer + 1] - target[idx])[pm[idx]]
        return reply_loss(out.logits, enc, idx) + recipe.audit_weight * err.pow(2).sum(-1).mean() / scale

    return fit(model, loss_fn, len(enc), recipe.training, seed, desc)
