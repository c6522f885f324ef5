"""Sparse autoencoders without the host: the ``Dictionary`` interface and folder format (atomic, checksummed), a
TopK SAE (also reads the BioRefusalAudit seed checkpoint), ReLU and JumpReLU SAEs, a reader/writer for the fork's
BatchTopKSAE folders, ``load_dictionary`` for any format we read (SAELens, sparsify, Gemma Scope, dictionary_learning,
hub ids), the SAELens export, the contrastive TopK trainer (trainSAE protocol; tier labels packed as extra columns,
see :mod:`cbd_plugin.sae.labels`), a resumable training loop and streaming held-out metrics."""

from .batchtopk import BatchTopKSAE
from .contrastive_trainer import ContrastiveSAEConfig, ContrastiveTopKTrainer, NonFiniteError
from .dictionary import Dictionary, atomic_write, save_folder
from .export import saelens_state, write_saelens
from .jumprelu import JumpReLUSAE
from .labels import pack_labels, unpack_labels
from .loading import load_dictionary
from .metrics import ReconstructionStats, evaluate_sae
from .relu import ReLUSAE
from .sparse import SparseCodes
from .topk import TopKSAE
from .training import train_sae

__all__ = [
    "BatchTopKSAE",
    "ContrastiveSAEConfig",
    "ContrastiveTopKTrainer",
    "Dictionary",
    "JumpReLUSAE",
    "NonFiniteError",
    "ReLUSAE",
    "ReconstructionStats",
    "SparseCodes",
    "TopKSAE",
    "atomic_write",
    "evaluate_sae",
    "load_dictionary",
    "pack_labels",
    "saelens_state",
    "save_folder",
    "train_sae",
    "unpack_labels",
    "write_saelens",
]
