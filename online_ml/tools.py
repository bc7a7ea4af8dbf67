"""Maintenance of the model store in Redis: ``redis_clear.py``.

The tutorial's ``redis_clear.py`` flushed the whole database, which also destroys anything else
living in it. Here the default removes only this project's keys (``ModelStore.project_keys()``);
wiping the database needs the explicit ``--flushdb``. Named keys are deleted one by one with a
report of each, as the tutorial's ``python redis_clear.py aaa bbb ccc``.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from .config import Settings
from .model_store import ModelFormatError, ModelStore

JOB_HINT = ("note: if the Flink job is still running it saves the model again within "
            "{interval:g} s; cancel it first in the Flink WebUI (http://localhost:8081).")


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="redis_clear.py",
        description="Delete the online model from Redis so the next job starts from scratch. "
                    "Without arguments only this project's keys (prefix "
                    f"{settings.model_key!r}) are removed.")
    p.add_argument("keys", nargs="*", metavar="KEY",
                   help="delete exactly these keys and report each")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--flushdb", action="store_true",
                      help=f"wipe the whole Redis database {settings.redis_db} "
                           "(every key, not just this project's)")
    mode.add_argument("--rollback", nargs="?", type=int, const=0, default=None,
                      metavar="VERSION",
                      help="make a kept model version the newest again "
                           "(default: the one before the newest)")
    p.add_argument("--prefix", default=settings.model_key,
                   help="model key prefix (default %(default)s, env MODEL_KEY)")
    p.add_argument("--redis-host", default=settings.redis_host,
                   help="default %(default)s, env REDIS_HOST")
    p.add_argument("--redis-port", type=int, default=settings.redis_port,
                   help="default %(default)s, env REDIS_PORT")
    p.add_argument("--redis-db", type=int, default=settings.redis_db,
                   help="default %(default)s, env REDIS_DB (the password comes from "
                        "REDIS_PASSWORD)")
    return p


def _connection_problem(exc: Exception, settings: Settings) -> str:
    import redis

    where = f"Redis at {settings.redis_host}:{settings.redis_port} (db {settings.redis_db})"
    text = str(exc).rstrip(". ")
    auth_words = ("auth", "password", "wrongpass", "noauth")
    if isinstance(exc, redis.AuthenticationError) or any(w in text.lower() for w in auth_words):
        return (f"error: {where} refused the password ({text}). Check REDIS_PASSWORD: "
                f"it must match the server's requirepass.")
    return (f"error: cannot reach {where}: {text or type(exc).__name__}. Is the local stack "
            f"running? Start it with `make up`, or set REDIS_HOST / REDIS_PORT.")


def clear(store: ModelStore, keys: Sequence[str], out: TextIO) -> int:
    r = store.r
    if keys:
        for key in keys:
            print(f"{key}: {'deleted' if r.delete(key) else 'did not exist'}", file=out)
        return 0
    found = store.project_keys()
    if not found:
        print(f"nothing to delete: no keys with prefix {store.prefix!r}", file=out)
        return 0
    deleted = [k for k in found if r.delete(k)]
    print(f"deleted {len(deleted)} key(s) with prefix {store.prefix!r}:", file=out)
    for key in deleted:
        print(f"  {key}", file=out)
    return 0


def flushdb(r, db: int, out: TextIO) -> int:
    n = r.dbsize()
    r.flushdb()
    print(f"flushed Redis db {db}: {n} key(s) removed", file=out)
    return 0


def rollback(store: ModelStore, version: int | None, out: TextIO, err: TextIO) -> int:
    try:
        meta = store.rollback(version)
    except LookupError as exc:
        print(f"error: cannot roll back: {exc.args[0] if exc.args else exc}", file=err)
        return 1
    except ModelFormatError as exc:
        print(f"error: cannot roll back: the kept model is unusable: {exc}", file=err)
        return 1
    source = meta.get("rolled_back_from")
    extra = ""
    if "samples_seen" in meta:
        extra = f", {meta['samples_seen']} samples seen"
    if isinstance(meta.get("accuracy"), (int, float)):
        extra += f", accuracy {meta['accuracy']:.4f}"
    print(f"rolled back: version {source} is now the newest model as version "
          f"{meta['version']}{extra}", file=out)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout,
         err: TextIO = sys.stderr) -> int:
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    if args.keys and (args.flushdb or args.rollback is not None):
        parser.error("give either KEYs or --flushdb or --rollback, not several")
    settings = Settings.from_env(redis_host=args.redis_host, redis_port=args.redis_port,
                                 redis_db=args.redis_db, model_key=args.prefix)

    import redis

    r = settings.redis_client()
    store = ModelStore(r, prefix=settings.model_key, keep=settings.model_versions_kept)
    try:
        r.ping()
        if args.flushdb:
            return flushdb(r, settings.redis_db, out)
        if args.rollback is not None:
            return rollback(store, args.rollback or None, out, err)
        code = clear(store, args.keys, out)
        if not args.keys:
            print(JOB_HINT.format(interval=settings.backup_interval_seconds), file=out)
        return code
    except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError) as exc:
        print(_connection_problem(exc, settings), file=err)
        return 2
    except redis.ResponseError as exc:
        text = str(exc)
        if any(w in text.lower() for w in ("auth", "password", "wrongpass", "noauth")):
            print(_connection_problem(exc, settings), file=err)
        else:
            print(f"error: Redis refused the command: {text}", file=err)
        return 2
    except redis.RedisError as exc:
        print(f"error: Redis failed: {type(exc).__name__}: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130
    finally:
        r.close()
