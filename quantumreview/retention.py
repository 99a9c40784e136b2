"""When deliveries are pruned: the scheduled job's event, and how often it is queued."""

from __future__ import annotations

PRUNE_EVENT = "quantumreview.prune"
PRUNE_KEY = "retention-prune"
# Why hourly: each run deletes an hour's worth of old rows in a few short batches; rarer would mean bigger runs.
PRUNE_INTERVAL = 3600.0
