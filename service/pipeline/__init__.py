"""The consumer pipeline: decode, batch by collection, call the API, publish outcomes, commit."""
