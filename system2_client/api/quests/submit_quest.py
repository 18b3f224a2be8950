from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.problem import Problem
from ...models.quest_accepted import QuestAccepted
from ...models.quest_submit import QuestSubmit
from ...types import UNSET, Unset
from typing import cast
from uuid import UUID



def _get_kwargs(
    company_id: UUID,
    *,
    body: QuestSubmit,
    idempotency_key: None | str | Unset = UNSET,
    x_correlation_id: None | Unset | UUID = UNSET,

) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(idempotency_key, Unset):
        headers["idempotency-key"] = idempotency_key

    if not isinstance(x_correlation_id, Unset):
        headers["x-correlation-id"] = x_correlation_id



    

    

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/companies/{company_id}/quests".format(company_id=quote(str(company_id), safe=""),),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Problem | QuestAccepted | None:
    if response.status_code == 202:
        response_202 = QuestAccepted.from_dict(response.json())



        return response_202

    if response.status_code == 400:
        response_400 = Problem.from_dict(response.json())



        return response_400

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())



        return response_401

    if response.status_code == 403:
        response_403 = Problem.from_dict(response.json())



        return response_403

    if response.status_code == 409:
        response_409 = Problem.from_dict(response.json())



        return response_409

    if response.status_code == 413:
        response_413 = Problem.from_dict(response.json())



        return response_413

    if response.status_code == 422:
        response_422 = Problem.from_dict(response.json())



        return response_422

    if response.status_code == 429:
        response_429 = Problem.from_dict(response.json())



        return response_429

    if response.status_code == 500:
        response_500 = Problem.from_dict(response.json())



        return response_500

    if response.status_code == 503:
        response_503 = Problem.from_dict(response.json())



        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[Problem | QuestAccepted]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    company_id: UUID,
    *,
    client: AuthenticatedClient,
    body: QuestSubmit,
    idempotency_key: None | str | Unset = UNSET,
    x_correlation_id: None | Unset | UUID = UNSET,

) -> Response[Problem | QuestAccepted]:
    """ Submit Quest

    Args:
        company_id (UUID):
        idempotency_key (None | str | Unset):
        x_correlation_id (None | Unset | UUID):
        body (QuestSubmit):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | QuestAccepted]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
body=body,
idempotency_key=idempotency_key,
x_correlation_id=x_correlation_id,

    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)

def sync(
    company_id: UUID,
    *,
    client: AuthenticatedClient,
    body: QuestSubmit,
    idempotency_key: None | str | Unset = UNSET,
    x_correlation_id: None | Unset | UUID = UNSET,

) -> Problem | QuestAccepted | None:
    """ Submit Quest

    Args:
        company_id (UUID):
        idempotency_key (None | str | Unset):
        x_correlation_id (None | Unset | UUID):
        body (QuestSubmit):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | QuestAccepted
     """


    return sync_detailed(
        company_id=company_id,
client=client,
body=body,
idempotency_key=idempotency_key,
x_correlation_id=x_correlation_id,

    ).parsed

async def asyncio_detailed(
    company_id: UUID,
    *,
    client: AuthenticatedClient,
    body: QuestSubmit,
    idempotency_key: None | str | Unset = UNSET,
    x_correlation_id: None | Unset | UUID = UNSET,

) -> Response[Problem | QuestAccepted]:
    """ Submit Quest

    Args:
        company_id (UUID):
        idempotency_key (None | str | Unset):
        x_correlation_id (None | Unset | UUID):
        body (QuestSubmit):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | QuestAccepted]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
body=body,
idempotency_key=idempotency_key,
x_correlation_id=x_correlation_id,

    )

    response = await client.get_async_httpx_client().request(
        **kwargs
    )

    return _build_response(client=client, response=response)

async def asyncio(
    company_id: UUID,
    *,
    client: AuthenticatedClient,
    body: QuestSubmit,
    idempotency_key: None | str | Unset = UNSET,
    x_correlation_id: None | Unset | UUID = UNSET,

) -> Problem | QuestAccepted | None:
    """ Submit Quest

    Args:
        company_id (UUID):
        idempotency_key (None | str | Unset):
        x_correlation_id (None | Unset | UUID):
        body (QuestSubmit):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | QuestAccepted
     """


    return (await asyncio_detailed(
        company_id=company_id,
client=client,
body=body,
idempotency_key=idempotency_key,
x_correlation_id=x_correlation_id,

    )).parsed
