"""Tests for tuner_tui.data."""
