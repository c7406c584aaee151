"""The pipeline's steps, one a module: decode -> hold -> route -> (each account's lane: batch -> call) -> publish ->
commit. Hold, route and call decide images in the ledger; publish takes what it finished."""

from service.pipeline.steps.abstract import MessageRejected, Step

__all__ = ["MessageRejected", "Step"]
