"""One stream per provider; a provider's stream is offered when its credentials are set."""

from tap_optouts.streams.checkmarket import CheckMarketOptoutsStream
from tap_optouts.streams.optizmo import OptizmoOptoutsStream
from tap_optouts.streams.slicktext import SlickTextOptoutsStream

STREAM_TYPES = [CheckMarketOptoutsStream, SlickTextOptoutsStream, OptizmoOptoutsStream]

__all__ = ["STREAM_TYPES"]
