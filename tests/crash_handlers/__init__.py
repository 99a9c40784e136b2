"""Test-only handlers for the crash and benchmark runs: they record every run and one idempotent effect."""
