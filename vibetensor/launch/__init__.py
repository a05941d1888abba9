"""vt-launch's rank side (bootstrap, failure protocol) and ``python -m vibetensor.launch`` (the launcher).

The launcher itself lives in the top-level ``launch`` package (console script ``vt-launch``).
"""
