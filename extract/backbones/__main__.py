"""`python -m extract.backbones --write-costs`: recount the cost table (`costs.json`) and rewrite
the listing (`listing.json`) that `extract backbones` reads, after adding or changing a registry
entry."""

from extract.backbones import load
from extract.backbones.cost import main

load()  # every declaration file: the table and the listing cover the whole registry
main()
