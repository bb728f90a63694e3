"""Measurements: proximal density (`density/`) and flatness (`flatness/`).

They live here, not at the top level, so that the public functions `pytest_psa.density` and
`pytest_psa.flatness` are never shadowed by subpackages of the same name.
"""
