"""Serve the drawing board and predictions from the newest model in Redis.

    python model_server.py            # then open http://127.0.0.1:8066
    python model_server.py --host 0.0.0.0 --port 8066

The page predicts (POST /predict, the tutorial's form field imgStr), sends the user's label back
to Kafka as a training record (POST /api/feedback) and charts the model learning; the JSON API is
GET /api/model, /api/metrics/history, /healthz (Redis and Kafka) and /metrics (Prometheus).

Settings (Redis address, model key, ...) come from environment variables, see online_ml/config.py.
"""
from __future__ import annotations

import argparse
import logging
import sys

from online_ml.config import Settings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a bad setting: say which, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=settings.server_host,
                        help=f"address to listen on (default {settings.server_host})")
    parser.add_argument("--port", type=int, default=settings.server_port,
                        help=f"port to listen on (default {settings.server_port})")
    parser.add_argument("--debug", action="store_true", help="Flask debug mode (reloader)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(server_host=args.host, server_port=args.port)

    from online_ml.server import create_app

    app = create_app({"SETTINGS": settings})
    print(f"drawing board on http://{args.host}:{args.port}/ "
          f"(model from Redis {settings.redis_host}:{settings.redis_port}, "
          f"key {settings.model_key!r})", flush=True)
    app.run(host=args.host, port=args.port, debug=args.debug, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
