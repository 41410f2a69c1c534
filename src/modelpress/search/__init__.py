"""Search over compression choices. Today: per-layer sensitivity for any step
(``from modelpress.search.sensitivity import sensitivity``)."""

__all__: list[str] = []
