from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.integration_tokens import IntegrationTokens
from ...models.integration_view import IntegrationView
from ...models.problem import Problem
from typing import cast
from uuid import UUID



def _get_kwargs(
    company_id: UUID,
    integration: str,
    *,
    body: IntegrationTokens,

) -> dict[str, Any]:
    headers: dict[str, Any] = {}


    

    

    _kwargs: dict[str, Any] = {
        "method": "put",
        "url": "/v1/companies/{company_id}/integrations/{integration}".format(company_id=quote(str(company_id), safe=""),integration=quote(str(integration), safe=""),),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> IntegrationView | Problem | None:
    if response.status_code == 200:
        response_200 = IntegrationView.from_dict(response.json())



        return response_200

    if response.status_code == 400:
        response_400 = Problem.from_dict(response.json())



        return response_400

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())



        return response_401

    if response.status_code == 403:
        response_403 = Problem.from_dict(response.json())



        return response_403

    if response.status_code == 404:
        response_404 = Problem.from_dict(response.json())



        return response_404

    if response.status_code == 413:
        response_413 = Problem.from_dict(response.json())



        return response_413

    if response.status_code == 422:
        response_422 = Problem.from_dict(response.json())



        return response_422

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


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[IntegrationView | Problem]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    company_id: UUID,
    integration: str,
    *,
    client: AuthenticatedClient,
    body: IntegrationTokens,

) -> Response[IntegrationView | Problem]:
    """ Connect Integration

     Store the tokens of a completed OAuth flow, encrypted; none of them is echoed back.

    Args:
        company_id (UUID):
        integration (str):
        body (IntegrationTokens): What the upstream API sends; never echoed back, never logged.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[IntegrationView | Problem]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
integration=integration,
body=body,

    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)

def sync(
    company_id: UUID,
    integration: str,
    *,
    client: AuthenticatedClient,
    body: IntegrationTokens,

) -> IntegrationView | Problem | None:
    """ Connect Integration

     Store the tokens of a completed OAuth flow, encrypted; none of them is echoed back.

    Args:
        company_id (UUID):
        integration (str):
        body (IntegrationTokens): What the upstream API sends; never echoed back, never logged.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        IntegrationView | Problem
     """


    return sync_detailed(
        company_id=company_id,
integration=integration,
client=client,
body=body,

    ).parsed

async def asyncio_detailed(
    company_id: UUID,
    integration: str,
    *,
    client: AuthenticatedClient,
    body: IntegrationTokens,

) -> Response[IntegrationView | Problem]:
    """ Connect Integration

     Store the tokens of a completed OAuth flow, encrypted; none of them is echoed back.

    Args:
        company_id (UUID):
        integration (str):
        body (IntegrationTokens): What the upstream API sends; never echoed back, never logged.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[IntegrationView | Problem]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
integration=integration,
body=body,

    )

    response = await client.get_async_httpx_client().request(
        **kwargs
    )

    return _build_response(client=client, response=response)

async def asyncio(
    company_id: UUID,
    integration: str,
    *,
    client: AuthenticatedClient,
    body: IntegrationTokens,

) -> IntegrationView | Problem | None:
    """ Connect Integration

     Store the tokens of a completed OAuth flow, encrypted; none of them is echoed back.

    Args:
        company_id (UUID):
        integration (str):
        body (IntegrationTokens): What the upstream API sends; never echoed back, never logged.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        IntegrationView | Problem
     """


    return (await asyncio_detailed(
        company_id=company_id,
integration=integration,
client=client,
body=body,

    )).parsed
