"""``python -m deepfill_min`` is the ``deepfill-min`` command (also what ``torchrun -m deepfill_min`` runs)."""

import sys

from .cli import console

sys.exit(console())
