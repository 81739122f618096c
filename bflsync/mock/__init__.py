"""A BFL-compatible finetune API on loopback, for the demo, the tests and trying bflsync keyless."""
