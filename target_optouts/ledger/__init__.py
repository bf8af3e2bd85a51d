"""The suppression ledger: which addresses each destination is known to hold, and the evidence
of how each became known (see `tables.py` for what is kept, `session.py` for how a run uses
it, `main.py` for the `optouts-ledger` command)."""
