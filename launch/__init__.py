"""vt-launch: runs an N-rank job through mpiexec (or srun), or one process over all local devices.

    vt-launch -n 4 train.py --epochs 3
    vt-launch --single-process train.py
    python -m vibetensor.launch -n 2 script.py

See ``vt-launch --help`` and ``launch/cli.py``.
"""
