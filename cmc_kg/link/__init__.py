"""Links from the graph to other datasets: Wikidata (`cmc-kg link wikidata`, `cmc-kg enrich wikidata`).

curation.py: the curated link set and its Turtle; client.py: a polite SPARQL client; wikidata.py: candidates,
scores and contradictions; enrich.py: the snapshot of declared facts; cli.py: the commands.
"""
