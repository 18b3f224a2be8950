from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.problem import Problem
from ...models.webhook_created import WebhookCreated
from ...models.webhook_spec import WebhookSpec
from typing import cast
from uuid import UUID



def _get_kwargs(
    company_id: UUID,
    *,
    body: WebhookSpec,

) -> dict[str, Any]:
    headers: dict[str, Any] = {}


    

    

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/companies/{company_id}/webhooks".format(company_id=quote(str(company_id), safe=""),),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Problem | WebhookCreated | None:
    if response.status_code == 201:
        response_201 = WebhookCreated.from_dict(response.json())



        return response_201

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())



        return response_401

    if response.status_code == 403:
        response_403 = Problem.from_dict(response.json())



        return response_403

    if response.status_code == 413:
        response_413 = Problem.from_dict(response.json())



        return response_413

    if response.status_code == 422:
        response_422 = Problem.from_dict(response.json())



        return response_422

    if response.status_code == 503:
        response_503 = Problem.from_dict(response.json())



        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[Problem | WebhookCreated]:
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
    body: WebhookSpec,

) -> Response[Problem | WebhookCreated]:
    """ Create Webhook

     Register an endpoint for the given event types. The answer holds its signing secret,
    shown this once.

    Args:
        company_id (UUID):
        body (WebhookSpec): An endpoint to register: where, and for which events.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | WebhookCreated]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
body=body,

    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)

def sync(
    company_id: UUID,
    *,
    client: AuthenticatedClient,
    body: WebhookSpec,

) -> Problem | WebhookCreated | None:
    """ Create Webhook

     Register an endpoint for the given event types. The answer holds its signing secret,
    shown this once.

    Args:
        company_id (UUID):
        body (WebhookSpec): An endpoint to register: where, and for which events.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | WebhookCreated
     """


    return sync_detailed(
        company_id=company_id,
client=client,
body=body,

    ).parsed

async def asyncio_detailed(
    company_id: UUID,
    *,
    client: AuthenticatedClient,
    body: WebhookSpec,

) -> Response[Problem | WebhookCreated]:
    """ Create Webhook

     Register an endpoint for the given event types. The answer holds its signing secret,
    shown this once.

    Args:
        company_id (UUID):
        body (WebhookSpec): An endpoint to register: where, and for which events.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | WebhookCreated]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
body=body,

    )

    response = await client.get_async_httpx_client().request(
        **kwargs
    )

    return _build_response(client=client, response=response)

async def asyncio(
    company_id: UUID,
    *,
    client: AuthenticatedClient,
    body: WebhookSpec,

) -> Problem | WebhookCreated | None:
    """ Create Webhook

     Register an endpoint for the given event types. The answer holds its signing secret,
    shown this once.

    Args:
        company_id (UUID):
        body (WebhookSpec): An endpoint to register: where, and for which events.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | WebhookCreated
     """


    return (await asyncio_detailed(
        company_id=company_id,
client=client,
body=body,

    )).parsed
