"""The router stage (decision 0022): input records forwarded to the collections topic by collection."""

from service.router.stage import RouterStage, pipeline_settings

__all__ = ["RouterStage", "pipeline_settings"]
