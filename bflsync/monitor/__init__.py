"""Watching unattended syncs: the metrics file, healthcheck pings, ``bflsync status`` and timer units.

``metrics`` writes a node_exporter textfile (Prometheus text format) after each run; ``ping``
tells a healthchecks.io-style service that a run started and how it ended; ``health`` reads a
store's last runs, staleness and lock holder for ``bflsync status``; ``schedule`` writes the
systemd units and crontab line that run a sync without shell glue; ``watch`` ties the metrics
file and the pings to one sync invocation.
"""
