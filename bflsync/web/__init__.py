"""What ``bflsync serve`` shows in Datasette."""
