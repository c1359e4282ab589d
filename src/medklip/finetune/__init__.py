"""Fine-tuning a pre-trained MedKLIP image encoder: classification, segmentation, grading."""
from medklip.finetune.config import FinetuneConfig
from medklip.finetune.trainer import FinetuneResult, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune"]
