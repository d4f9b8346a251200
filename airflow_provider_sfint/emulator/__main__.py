"""``sfint-emulator``: serve an emulated Salesforce org on this machine."""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

from .app import (
    ADMIN_PASSWORD,
    ADMIN_SECURITY_TOKEN,
    ADMIN_USERNAME,
    CLIENT_ID,
    CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
    Emulator,
)
from .schema import load_org

EPILOG = f"""
default credentials:
  connected app client id      {CLIENT_ID}
  connected app client secret  {CLIENT_SECRET}
  user                         {ADMIN_USERNAME}
  password (password flow)     {ADMIN_PASSWORD}  (the flow is off unless --enable-password-flow)
  security token (SOAP login)  {ADMIN_SECURITY_TOKEN}  (appended to the password: POST /services/Soap/u/<version>)
  refresh token                {DEFAULT_REFRESH_TOKEN}
  JWT bearer                   register a certificate with --jwt-cert PEM; aud https://login.salesforce.com

The admin API (not part of Salesforce) is under /__emulator__/ : reset, seed, load, faults,
counters, events, limits, clock, settings, tokens, pubsub (Change Data Capture selection,
channels, gap events, Pub/Sub settings and faults).

The Pub/Sub API (gRPC, eventbus.v1.PubSub) is served on --grpc-port, plaintext, or TLS with the
same certificate as HTTPS under --tls.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfint-emulator",
        description="A local Salesforce-compatible server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=0,
        help="port of the Pub/Sub API (gRPC; default 0: a free port, printed at start-up)",
    )
    parser.add_argument(
        "--tls", action="store_true", help="serve HTTPS and gRPC with a generated self-signed certificate"
    )
    parser.add_argument("--cert-dir", help="where --tls writes its certificate (default: next to the database)")
    parser.add_argument(
        "--seed",
        choices=["demo", "empty", "keep"],
        default="demo",
        help="initial data: demo (default), empty, or keep what --db already holds",
    )
    parser.add_argument(
        "--demo-records",
        type=int,
        default=None,
        help="Accounts in the demo org (default 1000; other objects in proportion)",
    )
    parser.add_argument("--org", help="org definition YAML (default: the bundled demo org)")
    parser.add_argument("--db", help="SQLite file for the org's records (default: a temporary file)")
    parser.add_argument(
        "--jwt-cert",
        action="append",
        default=[],
        metavar="PEM",
        help="certificate (or public key) JWT bearer assertions are signed for; repeatable",
    )
    parser.add_argument(
        "--profile",
        choices=["instant", "realistic"],
        default="instant",
        help="timing: instant (default, as fast as the machine) or realistic (a typical Enterprise org over the "
        "internet: API latency, Bulk job durations, bandwidth; see docs/emulator.md)",
    )
    parser.add_argument("--enable-password-flow", action="store_true", help="allow the username-password flow")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--ready-file",
        metavar="PATH",
        help="once listening, write the URL, gRPC port, certificate and org id here as JSON (for launchers)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    import uvicorn

    from .pubsub import PubSubServer
    from .server import KEEP_ALIVE_SECONDS, grpc_credentials, make_self_signed

    emulator = Emulator(
        load_org(args.org),
        db_path=args.db,
        seed=args.seed,
        jwt_certificates=[Path(p).read_bytes() for p in args.jwt_cert],
        demo_records=args.demo_records,
        profile=args.profile,
    )
    emulator.auth.settings.password_flow = args.enable_password_flow
    ssl: dict[str, str] = {}
    scheme = "http"
    credentials = None
    if args.tls:
        cert, key = make_self_signed(args.cert_dir or emulator.data_dir)
        ssl = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        scheme = "https"
        credentials = grpc_credentials(cert, key)
        print(f"TLS certificate: {cert}", flush=True)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))  # bound here, so --port 0 serves on a free port and prints it
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"{scheme}://{host}:{sock.getsockname()[1]}"
    pubsub = PubSubServer(emulator, args.host, args.grpc_port, credentials)
    pubsub.start()
    print(
        f"sfint emulator serving {url} and the Pub/Sub API (gRPC"
        f"{', TLS' if args.tls else ', plaintext'}) on {host}:{pubsub.port} (client id {CLIENT_ID}, "
        f"user {ADMIN_USERNAME}); Ctrl-C to stop",
        flush=True,
    )
    config = uvicorn.Config(
        emulator.app,
        log_level=args.log_level,
        access_log=False,
        lifespan="off",
        ssl_certfile=ssl.get("ssl_certfile"),
        ssl_keyfile=ssl.get("ssl_keyfile"),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    server = uvicorn.Server(config)
    if args.ready_file:
        sock.listen(2048)  # connections made from now on wait in the backlog until uvicorn accepts them
        ready = {"url": url, "grpc_port": pubsub.port, "cert_path": ssl.get("ssl_certfile"), "org_id": emulator.org_id}
        partial = Path(args.ready_file).with_suffix(".partial")
        partial.write_text(json.dumps(ready))
        partial.replace(args.ready_file)
    try:
        server.run(sockets=[sock])
    finally:
        pubsub.stop()
        emulator.close()


if __name__ == "__main__":
    main()
