"""MedKLIP model: image encoder, fusion decoder, existence and position heads; its loss; loading."""
from medklip.models.config import MedKLIPConfig
from medklip.models.criterion import MedKLIPCriterion, pair_counts
from medklip.models.medklip import MedKLIP, init_weights
from medklip.models.official import (
    infer_config,
    medklip_to_official_key,
    official_to_medklip_key,
    read_official_state_dict,
)
from medklip.models.outputs import MedKLIPLoss, MedKLIPOutput

__all__ = [
    "MedKLIP",
    "MedKLIPConfig",
    "MedKLIPCriterion",
    "MedKLIPLoss",
    "MedKLIPOutput",
    "infer_config",
    "init_weights",
    "medklip_to_official_key",
    "official_to_medklip_key",
    "pair_counts",
    "read_official_state_dict",
]
