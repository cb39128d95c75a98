"""Small helpers shared by the bundles and the command lines."""
