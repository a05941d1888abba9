"""Transports behind one small interface (see base.Transport): mpi, local, nccl, ipc."""
