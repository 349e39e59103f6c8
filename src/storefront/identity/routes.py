from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from storefront.identity.deps import CurrentUserRow
from storefront.identity.schemas import LoginIn, RegisterIn, TokenOut, UserOut, UserPatch
from storefront.identity.service import IdentityService
from storefront.platform.http.deps import RuntimeDep, SessionDep
from storefront.platform.http.responses import NO_STORE, PROBLEM_RESPONSES, no_store

router = APIRouter(tags=["identity"])


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=PROBLEM_RESPONSES,
)
async def register(
    body: RegisterIn, session: SessionDep, runtime: RuntimeDep, response: Response
) -> UserOut:
    user = await IdentityService(session, runtime.passwords).register(
        email=body.email, password=body.password, display_name=body.display_name
    )
    no_store(response)
    return UserOut.model_validate(user)


async def _login(session: SessionDep, runtime: RuntimeDep, email: str, password: str) -> TokenOut:
    service = IdentityService(session, runtime.passwords)
    user = await service.authenticate(email=email, password=password)
    issued = service.issue_tokens(runtime.tokens, user)
    return TokenOut(access_token=issued.access_token, expires_in=issued.expires_in)


@router.post(
    "/auth/login",
    response_model=TokenOut,
    responses=PROBLEM_RESPONSES,
    response_model_exclude_none=True,
)
async def login(
    body: LoginIn, session: SessionDep, runtime: RuntimeDep, response: Response
) -> TokenOut:
    no_store(response)
    return await _login(session, runtime, body.email, body.password)


@router.post(
    "/auth/token",
    response_model=TokenOut,
    responses=PROBLEM_RESPONSES,
    summary="OAuth2 password flow (for the docs page's Authorize button)",
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> TokenOut:
    no_store(response)
    return await _login(session, runtime, form.username, form.password)


@router.get("/users/me", response_model=UserOut, responses=PROBLEM_RESPONSES)
async def me(user: CurrentUserRow, response: Response) -> UserOut:
    response.headers["Cache-Control"] = NO_STORE
    return UserOut.model_validate(user)


@router.patch("/users/me", response_model=UserOut, responses=PROBLEM_RESPONSES)
async def update_me(
    body: UserPatch,
    user: CurrentUserRow,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> UserOut:
    updated = await IdentityService(session, runtime.passwords).update_profile(
        user, display_name=body.display_name
    )
    no_store(response)
    return UserOut.model_validate(updated)
