"""Indexing, gather/scatter and friends."""
from __future__ import annotations

from ..dispatcher import defop
from ._util import V, xp_of
