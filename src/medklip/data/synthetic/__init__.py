"""The embedded synthetic chest X-ray world: radiographs with findings, masks and reports."""
from medklip.data.synthetic.world import (
    SEEN_FINDINGS,
    UNSEEN_FINDINGS,
    Study,
    WorldConfig,
    generate_world,
    make_study,
)

__all__ = ["SEEN_FINDINGS", "UNSEEN_FINDINGS", "Study", "WorldConfig", "generate_world", "make_study"]
