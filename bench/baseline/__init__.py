"""The ingest benchmark's baseline: a plain DRF ModelViewSet.create into one table."""
