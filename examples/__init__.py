"""Worked examples of hfspark (importable as ``examples.*`` from the repository root)."""
