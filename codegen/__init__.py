"""ringgen.codegen: schemas and actor modules -> IR -> C/CUDA sources and a Python package."""
