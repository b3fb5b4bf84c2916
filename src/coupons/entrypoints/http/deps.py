"""Authentication of every request but health and metrics."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBasic, HTTPBearer

from coupons.domain import errors
from coupons.entrypoints.http.middleware import request_id_of
from coupons.services.auth import Authenticator, actor_of, require
from coupons.services.common import Actor

# Declared for the OpenAPI document only; `authenticate` reads the headers itself.
_basic_scheme = HTTPBasic(auto_error=False, description="API client username and secret")
_bearer_scheme = HTTPBearer(auto_error=False, description="token from /v3/oauth/token/generate")
_token_scheme = APIKeyHeader(
    name="X-CAP-API-OAUTH-TOKEN", auto_error=False, description="token, vendor header"
)


def authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.authenticator
    return auth


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authenticate(request: Request) -> Actor:
    """The caller, from Basic credentials, `X-CAP-API-OAUTH-TOKEN` or a Bearer token."""
    auth = authenticator(request)
    token = request.headers.get("x-cap-api-oauth-token")
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if token:
        return actor_of(auth.check_token(token.strip()))
    if scheme.lower() == "bearer" and value.strip():
        return actor_of(auth.check_token(value.strip()))
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise errors.AuthenticationFailed() from None
        username, sep, secret = decoded.partition(":")
        if not sep or not username:
            raise errors.AuthenticationFailed()
        return actor_of(auth.check_secret(username, secret, client_address(request)))
    raise errors.AuthenticationFailed()


def allowed(permission: str) -> Callable[..., Actor]:
    """A dependency: the authenticated caller, if its access group allows `permission`."""

    def dependency(
        request: Request,
        _basic: Annotated[object, Depends(_basic_scheme)] = None,
        _bearer: Annotated[object, Depends(_bearer_scheme)] = None,
        _token: Annotated[object, Depends(_token_scheme)] = None,
    ) -> Actor:
        actor = authenticate(request)
        require(actor, permission)
        return actor

    return dependency


def request_id(request: Request) -> str:
    return request_id_of(request.scope)


ReadActor = Annotated[Actor, Depends(allowed("read"))]
