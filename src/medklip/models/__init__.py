"""MedKLIP model: image encoder, fusion decoder, existence and position heads."""
from medklip.models.config import MedKLIPConfig
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
    "MedKLIPLoss",
    "MedKLIPOutput",
    "infer_config",
    "init_weights",
    "medklip_to_official_key",
    "official_to_medklip_key",
    "read_official_state_dict",
]
