"""Sparse codes: each token's active latents as ``(values, indices)``, never a dense ``[n, dict_size]`` tensor.

``SparseCodes(top_acts [n, m], top_indices [n, m])``: ``m`` is ``k`` for a TopK SAE and the largest number of
active latents in the batch for the BatchTopK modes, so rows with fewer active latents carry zeros in ``top_acts``
(padding slots hold index 0 and value 0: count or mask active latents with ``top_acts != 0``). Decoding gathers
only the ``m`` decoder rows of each token.

Kernels, each chosen by measurement on CPU (benchmarks/ and docs/VALIDATION.md hold the figures): the decode
gathers rows with ``embedding_bag`` (as sparsify does), except on a transposed weight, where a CSR product is
faster; weight gradients are transposed CSR products rather than an ``index_add`` of outer products or a dense
product; ``sampled_addmm`` gives the gradient of the selected latents without the dense ``[n, dict]`` product.

:class:`SelectedPreActivations` and :class:`SparseDecode` are the autograd functions the trainer uses: the
forward pays one dense encoder GEMM (needed to choose the top-k), the backward only ``n * m * d`` work.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F


def csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A CSR matrix built from indices we made valid; without torch's beta-state warning on every call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


class SparseCodes(NamedTuple):
    """Active latents of ``n`` tokens: ``top_acts [n, m]`` float (zeros allowed), ``top_indices [n, m]`` long."""

    top_acts: torch.Tensor
    top_indices: torch.Tensor

    def to_dense(self, dict_size: int) -> torch.Tensor:
        """The ``[n, dict_size]`` codes (zeros elsewhere)."""
        dense = self.top_acts.new_zeros(self.top_acts.shape[0], dict_size)
        return dense.scatter_add_(1, self.top_indices, self.top_acts)  # add: padding slots may repeat an index

    def active(self) -> torch.Tensor:
        """Bool ``[n, m]``: which entries are active (non-zero)."""
        return self.top_acts != 0


def check_activations(x: torch.Tensor, activation_dim: int, source: str) -> torch.Tensor:
    """``x`` as ``[n, activation_dim]``; raise naming the shapes on a wrong width, the token on a non-finite value.

    The finiteness check is one pass over ``[n, d]`` beside an ``[n, d] x [d, dict]`` GEMM: not measurable.
    """
    if x.ndim == 0 or x.shape[-1] != activation_dim:
        raise ValueError(
            f"{source}: input has shape {tuple(x.shape)}, but this SAE reads activations "
            f"[..., {activation_dim}] (activation_dim {activation_dim})"
        )
    x2 = x.reshape(-1, activation_dim)
    finite = torch.isfinite(x2).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()
        first = int(bad[0])
        raise ValueError(
            f"{source}: {len(bad)} token(s) hold NaN/Inf, first at token {first} of {x2.shape[0]} "
            f"(value {x2[first][~torch.isfinite(x2[first])][0].item()}); clean the activations first"
        )
    return x2


def codes_matrix(codes: SparseCodes, dict_size: int, values: torch.Tensor | None = None) -> torch.Tensor:
    """CSR ``[n, dict_size]`` with ``values`` (default ``codes.top_acts``) at the codes' positions."""
    n, m = codes.top_indices.shape
    crow = torch.arange(0, n * m + 1, m, device=codes.top_indices.device)
    values = codes.top_acts if values is None else values
    return csr(crow, codes.top_indices.reshape(-1), values.reshape(-1), (n, dict_size))


def codes_matrix_t(codes: SparseCodes, dict_size: int, values: torch.Tensor) -> torch.Tensor:
    """CSR ``[dict_size, n]``: the transpose of :func:`codes_matrix`, rows sorted by latent."""
    n, m = codes.top_indices.shape
    latent = codes.top_indices.reshape(-1)
    order = latent.argsort()
    token = torch.arange(n, device=latent.device).repeat_interleave(m)[order]
    crow = torch.zeros(dict_size + 1, dtype=torch.long, device=latent.device)
    crow[1:] = torch.bincount(latent, minlength=dict_size).cumsum(0)
    return csr(crow, token, values.reshape(-1)[order], (dict_size, n))


def sparse_matmul(codes: SparseCodes, weight_rows: torch.Tensor) -> torch.Tensor:
    """``dense(codes) @ weight_rows`` for ``weight_rows [dict_size, d]`` (a transposed view is fine)."""
    if codes.top_indices.shape[1] == 0:
        return weight_rows.new_zeros(codes.top_indices.shape[0], weight_rows.shape[1])
    if weight_rows.is_contiguous():  # embedding_bag gathers contiguous rows fastest (1.6-2.3x the CSR product)
        return F.embedding_bag(
            codes.top_indices, weight_rows, per_sample_weights=codes.top_acts.to(weight_rows.dtype), mode="sum"
        )
    return codes_matrix(codes, weight_rows.shape[0]) @ weight_rows  # embedding_bag is 15x slower on strided rows


def dense_to_codes(f: torch.Tensor) -> SparseCodes:
    """Sparse codes of dense codes ``[n, dict_size]`` (width: the most active latents of any row): the fallback
    ``encode_sparse`` for dictionaries without a sparse encoder (ReLU, JumpReLU)."""
    width = max(int((f != 0).sum(1).max()) if f.shape[0] else 0, 1)
    top = f.abs().topk(width, dim=1, sorted=False)  # abs: codes of either sign are kept
    return SparseCodes(f.gather(1, top.indices), top.indices)


def topk_codes(pre: torch.Tensor, k: int) -> SparseCodes:
    """Row-wise top-k of pre-activations, then ReLU: equal to top-k of ``relu(pre)`` without the full-width ReLU."""
    top = pre.topk(k, dim=-1, sorted=False)
    return SparseCodes(top.values.relu_(), top.indices)


def pack_rows(values: torch.Tensor, flat_index: torch.Tensor, n: int, dict_size: int) -> SparseCodes:
    """Codes from active entries given as values at flat positions ``row * dict_size + latent`` of ``[n, dict]``."""
    row, latent = flat_index // dict_size, flat_index % dict_size
    order = row.argsort(stable=True)
    row, latent, values = row[order], latent[order], values[order]
    counts = torch.bincount(row, minlength=n)
    width = max(int(counts.max()) if len(row) else 0, 1)  # one zero column when nothing is active
    starts = counts.cumsum(0) - counts
    slot = torch.arange(len(row), device=row.device) - starts[row]
    top_acts = values.new_zeros(n, width)
    top_indices = torch.zeros(n, width, dtype=torch.long, device=row.device)
    top_acts[row, slot] = values
    top_indices[row, slot] = latent
    return SparseCodes(top_acts, top_indices)


class SelectedPreActivations(torch.autograd.Function):
    """``pre[row, indices[row, j]]`` of ``pre = (x - b_dec) @ W_enc + b_enc`` (``W_enc [d, dict]``; ``b_dec`` may
    be None: no subtraction), the values passed in; ``x`` is data (no gradient).

    The forward receives the values already computed (the caller needed the dense GEMM to choose ``indices``);
    the backward scatters the gradient only through the chosen entries: ``n * m * d`` work, not ``n * dict * d``.
    ``b_dec``'s gradient needs no ``[n, d]`` input gradient: it is ``-W_enc @ grad(b_enc)``, since every token
    subtracts the same ``b_dec``.
    """

    @staticmethod
    def forward(ctx, x, W_enc, b_enc, b_dec, indices, values):
        x_enc = x if b_dec is None else x - b_dec
        ctx.save_for_backward(x_enc, W_enc, indices)
        return values.clone()

    @staticmethod
    def backward(ctx, grad):
        x_enc, W_enc, indices = ctx.saved_tensors
        dict_size = W_enc.shape[1]
        grad_W = (
            (codes_matrix_t(SparseCodes(grad, indices), dict_size, grad) @ x_enc).T if ctx.needs_input_grad[1] else None
        )
        grad_b = torch.zeros(dict_size, dtype=grad.dtype, device=grad.device).index_add_(
            0, indices.reshape(-1), grad.reshape(-1)
        )
        grad_b_dec = -(W_enc @ grad_b) if ctx.needs_input_grad[3] else None
        return None, grad_W, grad_b if ctx.needs_input_grad[2] else None, grad_b_dec, None, None


class SparseDecode(torch.autograd.Function):
    """``dense(codes) @ W_dec`` for ``W_dec [dict, d]``, with gradients for ``top_acts`` and ``W_dec`` only at the
    codes' entries (``sampled_addmm`` for the activations, a transposed CSR product for the decoder)."""

    @staticmethod
    def forward(ctx, top_acts, top_indices, W_dec):
        ctx.save_for_backward(top_acts, top_indices, W_dec)
        return sparse_matmul(SparseCodes(top_acts, top_indices), W_dec)

    @staticmethod
    def backward(ctx, grad_out):
        top_acts, top_indices, W_dec = ctx.saved_tensors
        dict_size = W_dec.shape[0]
        grad_acts = grad_W = None
        if top_indices.shape[1] == 0:
            return torch.zeros_like(top_acts), None, torch.zeros_like(W_dec)
        if ctx.needs_input_grad[0]:
            pattern = codes_matrix(SparseCodes(top_acts, top_indices), dict_size, torch.zeros_like(top_acts))
            grad_acts = torch.sparse.sampled_addmm(pattern, grad_out.contiguous(), W_dec.T).values()
            grad_acts = grad_acts.view_as(top_acts)
        if ctx.needs_input_grad[2]:
            grad_W = codes_matrix_t(SparseCodes(top_acts, top_indices), dict_size, top_acts) @ grad_out
        return grad_acts, None, grad_W
