"""The data directory: the LMDB store and its reads, the group-commit writer, backup and
restore, the audit."""
