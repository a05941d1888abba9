"""Run pytest on one MPI rank (started by tests/test_mpi_suite.py through mpiexec).

Rank 0 prints pytest's output; the other ranks write theirs to ``$VT_MPI_LOG_DIR/rank<N>.log`` (the
suite shows those logs when the run fails). The exit code is pytest's, so mpiexec fails when any
rank fails.
"""
import os
import sys


def _rank():
    for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"):
        if os.environ.get(v, "").isdigit():
            return int(os.environ[v])
    return 0


def main():
    rank = _rank()
    if rank != 0:
        log = os.path.join(os.environ.get("VT_MPI_LOG_DIR", "."), f"rank{rank}.log")
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    import pytest
    code = pytest.main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(int(code))  # a normal exit: mpi4py finalises MPI (hydra kills the job if a rank skips that)


if __name__ == "__main__":
    main()
