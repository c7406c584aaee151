"""The consumer pipeline: decode -> hold (relist grace) -> route to the account's lane (batch by collection -> call
the API) -> publish outcomes -> commit, every event owned by the ledger (``ledger.py``); wired in ``processor.py``."""
