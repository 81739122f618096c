"""One sync run: list, fetch concurrently, write, and report the outcome."""
