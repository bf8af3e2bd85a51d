"""SlickText emulators: the legacy API under /slicktext, the new API under /slicktext-v2.

See docs/providers/slicktext.md. Times are stored as SlickText shows them, naive Pacific
`YYYY-MM-DD HH:MM:SS`, and compared as wall times; the true UTC instant of each row is kept
aside (`instants`) so that tests can check what a client makes of the repeated autumn hour.
Choices where the vendor is silent: `limit` over 10,000 is refused (400); a filter on an
unknown field is refused (400).

Modules: `legacy` and `v2` (one emulator each), `base` (what both share), `population` (who
they hold from the shared seed).
"""

from optouts_sandbox.slicktext.legacy import SlickTextLegacyEmulator
from optouts_sandbox.slicktext.population import subscribed_people
from optouts_sandbox.slicktext.v2 import SlickTextV2Emulator

__all__ = ["SlickTextLegacyEmulator", "SlickTextV2Emulator", "subscribed_people"]
