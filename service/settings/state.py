"""What imgsweep keeps on Kafka beyond offsets (``IMGSWEEP_STATE__*``): the memory of deletions for relists."""

from __future__ import annotations

from pydantic import Field

from service.settings.fields import Section

__all__ = ["StateSettings"]


class StateSettings(Section):
    """The memory of deletions: which images of a product were deleted, so that its relist gets an outcome
    naming them (``re_add_required``); kept on the compacted topic ``IMGSWEEP_KAFKA__DELETIONS_TOPIC``."""

    deletions_window_seconds: float = Field(
        default=7 * 86_400.0,
        ge=60,
        le=90 * 86_400,
        description=(
            "How long a deletion is remembered for a relist (default 7 days): the changelog topic's retention.ms."
        ),
    )
    max_remembered_products: int = Field(
        default=500_000,
        ge=1_000,
        description=(
            "Products remembered per replica, oldest forgotten first. Each costs about 200 bytes plus the lengths "
            "of its collection, product id and image ids (282 bytes with four 17-character image ids): the "
            "default is about 140 MB, 180 MB of RSS after long turnover, within the chart's 512Mi limit; with "
            "longer ids or more images a product, lower it or raise the limit (docs/performance.md)."
        ),
    )
