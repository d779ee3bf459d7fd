"""``python -m integrations.salesforce.emulator --port 8443``: run the emulator for a demo."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from .server import DEFAULT_ORG_ID, SalesforceEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m integrations.salesforce.emulator",
        description="A Salesforce org emulator over https (self-signed certificate).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument(
        "--state-dir",
        default=None,
        help="keep the certificate and the org's state here (reloaded next time)",
    )
    parser.add_argument("--org-id", default=DEFAULT_ORG_ID)
    parser.add_argument("--seed", type=int, default=1, help="random seed of the generator")
    parser.add_argument(
        "--seed-count",
        type=int,
        default=16,
        help="opportunities to create when the org is new (0: none)",
    )
    parser.add_argument(
        "--outbound-url", default=None, help="send an Outbound Message there on every stage change"
    )
    parser.add_argument("--daily-limit", type=int, default=15000)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    emulator = SalesforceEmulator(
        args.state_dir,
        args.org_id,
        args.seed,
        host=args.host,
        port=args.port,
        daily_limit=args.daily_limit,
        verbose=args.verbose,
    )
    if args.seed_count and not emulator.records("Opportunity"):
        emulator.seed(args.seed_count)
    if args.outbound_url:
        emulator.configure_outbound(args.outbound_url, verify=False)
    base = emulator.start()
    print(f"Salesforce emulator at {base}  (org {emulator.org.org_id})", flush=True)
    print(f"  certificate:   {emulator.cert_path}  (requests: session.verify = this path)")
    print(f"  session id:    {emulator.issue_token()}")
    print(
        f"  username:      {emulator.USERNAME}  password: {emulator.PASSWORD}  "
        f"security token: {emulator.SECURITY_TOKEN}"
    )
    print(f"  connected app: client id {emulator.CLIENT_ID}  secret {emulator.CLIENT_SECRET}")
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
