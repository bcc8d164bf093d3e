"""Prometheus metrics: what the request path records (``recorder``), each worker's snapshot of it
on disk (``snapshot``), and the scrape that merges every worker's into one text (``exposition``)."""
