"""The evaluation protocol: quality + latency tables and trade-off figures."""
