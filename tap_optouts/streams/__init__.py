"""One stream per provider; a provider's stream is offered when its credentials are set."""

from tap_optouts.streams.checkmarket import CheckMarketOptoutsStream
from tap_optouts.streams.optizmo import OptizmoDownloadActivityStream, OptizmoOptoutsStream
from tap_optouts.streams.slicktext import SlickTextOptoutsStream

STREAM_TYPES = [
    CheckMarketOptoutsStream,
    SlickTextOptoutsStream,
    OptizmoOptoutsStream,
    OptizmoDownloadActivityStream,  # not selected by default (a report, not opt-outs)
]

__all__ = ["STREAM_TYPES"]
