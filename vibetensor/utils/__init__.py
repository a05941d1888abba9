"""``vt.utils``: data loading (``vt.utils.data``)."""
from . import data  # noqa: F401
