"""The `flowrunner` console script (placeholder)."""


def main() -> None:
    raise SystemExit("flowrunner: not implemented yet")
