"""Test kit: a fake GitHub on loopback, signed deliveries and pytest fixtures for plugin authors."""
