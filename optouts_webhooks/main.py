"""`optouts-webhooks`: the webhook receiver's command line.

    optouts-webhooks serve [--config FILE] [--host 127.0.0.1] [--port 8766]
    optouts-webhooks register --public-url https://hooks.example.com [--config FILE]

`serve` runs the receiver (Starlette on uvicorn) and the propagation workers in one process;
`register` registers the CheckMarket hook through its API and prints the URLs to set in
SlickText's dashboard. A configuration error is one ERROR line and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from optouts_providers import checkmarket
from optouts_providers.http import ProviderError, http_options
from optouts_providers.redact import install_log_redaction, redact
from optouts_webhooks.app import Receiver, create_app
from optouts_webhooks.config import ConfigError, load, webhook_settings
from optouts_webhooks.propagate import Propagator
from target_optouts.ledger.inbox import Inbox
from target_optouts.ledger.open import open_ledger
from target_optouts.ledger.store import LedgerError, LedgerUnavailable

logger = logging.getLogger("optouts-webhooks")
DEFAULT_PORT = 8766
LOGGERS = ("optouts-webhooks", "target-optouts", "uvicorn", "uvicorn.error")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optouts-webhooks", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="receive the providers' webhooks and propagate")
    serve.add_argument("--config", help="target-optouts' config file, with its webhooks object")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    register = commands.add_parser("register", help="register the CheckMarket hook")
    register.add_argument("--config", help="target-optouts' config file, with its webhooks object")
    register.add_argument("--public-url", required=True, help="where the receiver is reached")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    install_log_redaction(*LOGGERS)
    args = _parser().parse_args(argv)
    try:
        config = load(args.config)
        settings = webhook_settings(config)
        if args.command == "register":
            return register(config, settings.path_token, args.public_url)
        return serve(config, settings.path_token, settings.slicktext_secret, args.host, args.port)
    except (ConfigError, LedgerError, ValueError) as exc:
        logger.error("optouts-webhooks: %s", redact(exc))
        return 2


def serve(config: dict[str, Any], token: str, secret: str | None, host: str, port: int) -> int:
    try:
        ledger = open_ledger(config)
    except LedgerUnavailable as exc:
        raise ConfigError(f"the inbox needs the ledger: {exc}") from None
    if ledger is None:
        raise ConfigError("the inbox lives in the ledger: set ledger_url (it is empty)")
    inbox = Inbox(ledger)
    propagator = Propagator(config, inbox)
    receiver = Receiver(
        inbox,
        propagator.names,
        path_token=token,
        slicktext_secret=secret,
        region=str(config.get("default_phone_region") or "US").upper(),
        wake=propagator.wake,
    )
    if not secret:
        logger.warning(
            "optouts-webhooks: webhooks.slicktext_secret is not set: the SlickText legacy "
            "endpoint answers 404"
        )
    app = create_app(
        receiver, health=lambda: {"inbox": inbox.counts(), "workers": propagator.stats()}
    )
    propagator.start()
    logger.info(
        "optouts-webhooks: listening on http://%s:%d, writing to %s; inbox in %s",
        host,
        port,
        ", ".join(propagator.names),
        ledger.where,
    )
    try:
        # No access log: each request line holds the path token.
        uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
    finally:
        propagator.stop()
        ledger.close()
    return 0


def register(config: dict[str, Any], token: str, public_url: str) -> int:
    parts = urlsplit(public_url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigError("--public-url must be https:// (http only on loopback, for tests)")
    base = public_url.rstrip("/")
    cm = config.get("checkmarket") or {}
    if checkmarket.configured(cm):
        client = checkmarket.client_from_config(cm, http_options(config))
        try:
            data = client.register_hook(f"{base}/webhooks/checkmarket/{token}")
        except ProviderError as exc:
            raise ConfigError(
                f"CheckMarket refused the hook ({exc.status}): {exc.detail}"
            ) from None
        finally:
            client.close()
        print(
            f"CheckMarket: hook {data.get('WebhookId')} registered for Panelist.Optout at "
            f"{base}/webhooks/checkmarket/***"
        )
    else:
        print("CheckMarket: not configured (checkmarket.master_key and key); no hook registered")
    print(
        "SlickText (legacy API): in the dashboard, Settings > Webhooks, set the OptOut event's "
        f"URL to {base}/webhooks/slicktext/<path_token>, and copy the webhook secret into "
        "webhooks.slicktext_secret"
    )
    print(
        "SlickText (new API): in the dashboard, Settings > API & Webhooks > Webhooks, add "
        f"{base}/webhooks/slicktext-v2/<path_token> for contact_updated and contact_created"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
