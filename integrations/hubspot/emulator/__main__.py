"""``python -m integrations.hubspot.emulator --port 8090``: run the emulator for a demo."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from .server import DEFAULT_PORTAL_ID, HubSpotEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m integrations.hubspot.emulator",
        description="A HubSpot portal emulator over http for the unchanged hubspot-api-client.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--state-dir", default=None, help="keep the portal's state here (reloaded next time)"
    )
    parser.add_argument("--portal-id", type=int, default=DEFAULT_PORTAL_ID)
    parser.add_argument("--seed", type=int, default=1, help="random seed of the generator")
    parser.add_argument(
        "--seed-count",
        type=int,
        default=18,
        help="deals to create when the portal is new (0: none)",
    )
    parser.add_argument(
        "--webhook-url", default=None, help="send dealstage change events there (v3-signed)"
    )
    parser.add_argument(
        "--client-secret",
        default=None,
        help="the app's client secret that signs webhooks (default: the emulator app's)",
    )
    parser.add_argument("--webhook-style", choices=("object", "legacy", "both"), default="object")
    parser.add_argument("--ten-second-limit", type=int, default=100)
    parser.add_argument("--search-per-second", type=int, default=5)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if args.client_secret is not None and not args.webhook_url:
        parser.error("--client-secret needs --webhook-url")

    try:
        emulator = HubSpotEmulator(
            args.state_dir,
            args.portal_id,
            args.seed,
            host=args.host,
            port=args.port,
            ten_second_limit=args.ten_second_limit,
            search_per_second=args.search_per_second,
            verbose=args.verbose,
        )
        if args.seed_count and not emulator.deal_ids():
            emulator.seed(args.seed_count)
        if args.webhook_url:
            emulator.configure_webhooks(
                args.webhook_url, client_secret=args.client_secret, style=args.webhook_style
            )
        base = emulator.start()
    except (OSError, ValueError) as error:
        print(f"error: the HubSpot emulator could not start: {error}", flush=True)
        return 1
    print(f"HubSpot emulator at {base}  (portal {emulator.portal_id})", flush=True)
    print(f"  access token:  {emulator.private_app_token()}  (private app, never expires)")
    print(
        f"  OAuth app:     client id {emulator.CLIENT_ID}  secret {emulator.CLIENT_SECRET}  "
        f"(app {emulator.app_id})"
    )
    print(f"  webhooks:      {args.webhook_url or 'off'}")
    print(f"  control API:   {base}/__emulator/state", flush=True)
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    stopped.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
