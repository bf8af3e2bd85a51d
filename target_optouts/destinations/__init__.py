"""Where the target writes: one destination per configured provider (`base.Destination`, one
module per provider), all of them fed together (`fanout.Destinations`), built from the config
(`build.build_destinations`)."""

from target_optouts.destinations.base import (
    Address,
    Counts,
    DeliveryError,
    Destination,
    NoDestinationError,
    Values,
)
from target_optouts.destinations.build import build_destinations
from target_optouts.destinations.fanout import Destinations

__all__ = [
    "Address",
    "Counts",
    "DeliveryError",
    "Destination",
    "Destinations",
    "NoDestinationError",
    "Values",
    "build_destinations",
]
