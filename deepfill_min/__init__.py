"""deepfill-min: DeepFill v1 (Yu et al., CVPR 2018) in PyTorch, faithful to the official numerics."""

__version__ = "0.1.0"

from .attention import ContextualAttention, attention_weights, contextual_attention  # noqa: E402
from .discriminator import Discriminator  # noqa: E402
from .generator import Generator  # noqa: E402
from .inpaint import inpaint  # noqa: E402  (deepfill_min.inpaint(image, mask, generator))
from .weights import export_generator, load_generator  # noqa: E402

__all__ = [
    "ContextualAttention",
    "Discriminator",
    "Generator",
    "__version__",
    "attention_weights",
    "contextual_attention",
    "export_generator",
    "inpaint",
    "load_generator",
]
