"""Test helpers shared by several test folders (real servers started for a test, stopped by PID)."""
