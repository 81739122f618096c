"""bflsync: keep a local, queryable, audited record of BFL finetune training parameters."""

__version__ = "0.1.0"
