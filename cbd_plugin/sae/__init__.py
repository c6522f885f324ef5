"""Sparse autoencoders without the host: the ``Dictionary`` interface and folder format, a TopK SAE (also reads
the BioRefusalAudit seed checkpoint), a reader/writer for the fork's BatchTopKSAE folders, the contrastive TopK
trainer (trainSAE protocol; tier labels packed as extra columns, see :mod:`cbd_plugin.sae.data`), a resumable
training loop and streaming held-out metrics."""

from .batchtopk import BatchTopKSAE
from .contrastive_trainer import ContrastiveSAEConfig, ContrastiveTopKTrainer
from .data import BalancedTierBatches, pack_labels, unpack_labels
from .dictionary import atomic_write, Dictionary, save_folder
from .metrics import evaluate_sae, ReconstructionStats
from .topk import TopKSAE
from .training import train_sae

__all__ = ["BalancedTierBatches", "BatchTopKSAE", "ContrastiveSAEConfig", "ContrastiveTopKTrainer", "Dictionary",
           "ReconstructionStats", "TopKSAE", "atomic_write", "evaluate_sae", "pack_labels", "save_folder",
           "train_sae", "unpack_labels"]
