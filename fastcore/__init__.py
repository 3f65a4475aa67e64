"""Cython core of cardgate: packed records and the batch authorization ledger over LMDB.

There is no pure-Python fallback: importing this package without its compiled
extensions fails, on purpose.
"""
