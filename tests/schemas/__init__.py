"""Message schemas used across the tests (and as golden cases)."""
