"""Use cases: each gets plain values and a unit of work, asks the domain, and writes."""
