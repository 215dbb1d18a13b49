"""deepfill-min: DeepFill v1 (Yu et al., CVPR 2018) in PyTorch, faithful to the official numerics."""

from .attention import ContextualAttention, attention_weights, contextual_attention

__version__ = "0.1.0"
__all__ = ["ContextualAttention", "__version__", "attention_weights", "contextual_attention"]
