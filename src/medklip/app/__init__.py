"""The web page (``medklip serve``): upload a radiograph, see probabilities and heatmaps."""
from medklip.app.server import PredictionService, UploadError, create_app

__all__ = ["PredictionService", "UploadError", "create_app"]
