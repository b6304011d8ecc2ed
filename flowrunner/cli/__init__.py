"""The command-line program: it reaches the apps through their services and selectors only."""
