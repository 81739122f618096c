"""The record's integrity: the hash chain, verify, checkpoints, export and import."""
