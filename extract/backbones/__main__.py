"""`python -m extract.backbones --write-costs`: recount the cost table that `extract backbones`
reads (`extract/backbones/costs.json`), after adding or changing a registry entry."""

from extract.backbones.cost import main

main()
