"""`python -m flowrunner.cli`: the `flowrunner` console script."""

from flowrunner.cli.main import main

main()
