"""Report text -> structured findings."""
