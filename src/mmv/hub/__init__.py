"""Downloading and caching the published artifacts: names, the cache layout, Hub and ModelScope fetchers."""
