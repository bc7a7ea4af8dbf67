"""Every error is JSON ``{"success": false, "error": "..."}``; no traceback reaches a user."""
from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger(__name__)


def error(message: str, status: int):
    """The JSON error answer, with its status."""
    return jsonify(success=False, error=message), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return error(f"request too large (limit {limit} bytes)", 413)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error(f"{exc.name}: {exc.description}", exc.code or 500)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        app.extensions["server_metrics"].exceptions.inc()
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error("internal server error; see the server log", 500)
