"""``GET /metrics``: the Prometheus text exposition of the app's own registry.

Never open: it needs the API token or, where the operator set one, ``AGENTDOCK_METRICS_TOKEN``
(a scraper's credential that grants nothing else). Not part of the API's OpenAPI contract.
"""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST

from service.auth import METRICS
from service.state import AppState


@get("/metrics", include_in_schema=False, opt={METRICS: True}, cache=False)
async def metrics(app_state: NamedDependency[AppState]) -> Response[bytes]:
    """The service's metrics in the Prometheus text format (see docs/metrics.md)."""
    body = await app_state.metrics.render()
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
