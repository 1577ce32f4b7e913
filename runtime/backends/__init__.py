"""Backends that run generated ring kernels: `cpu` (g++ and a runner process, the default where
no GPU is usable) and `cuda` (PyCUDA)."""
