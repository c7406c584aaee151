"""The pipeline's steps, one a module: decode -> batch -> call -> publish -> commit."""

from service.pipeline.steps.abstract import MessageRejected, Step

__all__ = ["MessageRejected", "Step"]
