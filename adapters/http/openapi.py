"""`/api/v1/openapi.json`: the API described from the table that serves it (`api.ENDPOINTS`,
`api.WRITES`), so the document cannot drift from the routes."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from aiohttp import web

from ocsched import __version__

from .api import ENDPOINTS, EVENT_PARAMS, WRITES, Endpoint, Param
from .app import API_ROOT, json_response

ERROR = {"$ref": "#/components/schemas/Error"}
PATH_PARAMETER = re.compile(r"{(\w+)}")


def _parameter(param: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": param.kind}
    if param.repeat:
        schema = {"type": "array", "items": schema}
    return {
        "name": param.name,
        "in": "query",
        "description": param.description,
        "schema": schema,
        **({"style": "form", "explode": True} if param.repeat else {}),
    }


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": "an id, or a unique prefix of 4+ characters"
            if name == "id"
            else "the dispatch label",
            "schema": {"type": "string"},
        }
        for name in PATH_PARAMETER.findall(path)
    ]


def _responses(ok: dict[str, Any]) -> dict[str, Any]:
    return {
        "200": ok,
        "400": {"description": "a bad parameter", "content": _json(ERROR)},
        "401": {"description": "a token is required", "content": _json(ERROR)},
        "404": {"description": "not found", "content": _json(ERROR)},
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _read(found: Endpoint) -> dict[str, Any]:
    parameters = _path_parameters(found.path) + [_parameter(p) for p in found.params]
    if found.paged:
        parameters += [
            _parameter(Param("limit", "page size (100, at most 1000)", "integer")),
            _parameter(Param("cursor", "the next page's cursor (Link: rel=next)")),
        ]
    text = {"type": "string"}
    headers = {}
    if found.paged:
        headers["Link"] = {"description": 'the next page: <url>; rel="next"', "schema": text}
    if found.etag:
        headers["ETag"] = {"description": "the log position the answer reflects", "schema": text}
    body = {"type": "array", "items": {"type": "object"}} if found.returns == "list" else {}
    responses = _responses(
        {"description": "what the CLI's --json prints", "headers": headers, "content": _json(body)}
    )
    if found.etag:
        responses["304"] = {"description": "unchanged since the If-None-Match ETag"}
    return {"summary": found.summary, "parameters": parameters, "responses": responses}


def _write(path: str, summary: str) -> dict[str, Any]:
    reason = {"type": "object", "properties": {"reason": {"type": "string"}}}
    responses = _responses({"description": "decided", "content": _json({"type": "object"})})
    responses["403"] = {"description": "the CSRF guard refused it", "content": _json(ERROR)}
    responses["409"] = {"description": "no pending approval", "content": _json(ERROR)}
    return {
        "summary": summary,
        "parameters": _path_parameters(path),
        "security": [{"bearer": []}, {"cookie": []}],
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": reason},
                "application/x-www-form-urlencoded": {"schema": reason},
            },
        },
        "responses": responses,
    }


@cache
def document() -> dict[str, Any]:
    paths: dict[str, Any] = {API_ROOT + e.path: {"get": _read(e)} for e in ENDPOINTS}
    for path, summary, _ in WRITES:
        paths[API_ROOT + path] = {"post": _write(path, summary)}
    after = Param("after", "from this position (else Last-Event-ID, else now)", "integer")
    stream = _responses(
        {
            "description": "`id: <position>` and `data: <event record>` per event",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    )
    paths[f"{API_ROOT}/events/stream"] = {
        "get": {
            "summary": "server-sent events: each new event that passes the filters",
            "parameters": [_parameter(p) for p in (after, *EVENT_PARAMS)],
            "responses": stream,
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ocsched API",
            "version": __version__,
            "description": "The scheduler's read models as JSON (the shapes of the CLI's"
            " --json), and the approval decisions.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"ok": {"const": False}, "error": {"type": "string"}},
                }
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "ocsched_session"},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}, {}],
    }


async def openapi(request: web.Request) -> web.StreamResponse:
    return json_response(document(), headers={"ETag": f'"{__version__}"'})
