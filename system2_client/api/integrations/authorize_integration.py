from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.authorize_view import AuthorizeView
from ...models.problem import Problem
from typing import cast
from uuid import UUID



def _get_kwargs(
    company_id: UUID,
    integration: str,

) -> dict[str, Any]:
    

    

    

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/companies/{company_id}/integrations/{integration}/authorize".format(company_id=quote(str(company_id), safe=""),integration=quote(str(integration), safe=""),),
    }


    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> AuthorizeView | Problem | None:
    if response.status_code == 200:
        response_200 = AuthorizeView.from_dict(response.json())



        return response_200

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())



        return response_401

    if response.status_code == 403:
        response_403 = Problem.from_dict(response.json())



        return response_403

    if response.status_code == 404:
        response_404 = Problem.from_dict(response.json())



        return response_404

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


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[AuthorizeView | Problem]:
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

) -> Response[AuthorizeView | Problem]:
    """ Authorize Integration

     Begin connecting the integration (company admins): the provider's authorize URL, with
    a state bound to this company and this admin, single use, valid ten minutes. The
    provider sends the browser back to ``GET /v1/oauth/{integration}/callback``.

    Args:
        company_id (UUID):
        integration (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[AuthorizeView | Problem]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
integration=integration,

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

) -> AuthorizeView | Problem | None:
    """ Authorize Integration

     Begin connecting the integration (company admins): the provider's authorize URL, with
    a state bound to this company and this admin, single use, valid ten minutes. The
    provider sends the browser back to ``GET /v1/oauth/{integration}/callback``.

    Args:
        company_id (UUID):
        integration (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        AuthorizeView | Problem
     """


    return sync_detailed(
        company_id=company_id,
integration=integration,
client=client,

    ).parsed

async def asyncio_detailed(
    company_id: UUID,
    integration: str,
    *,
    client: AuthenticatedClient,

) -> Response[AuthorizeView | Problem]:
    """ Authorize Integration

     Begin connecting the integration (company admins): the provider's authorize URL, with
    a state bound to this company and this admin, single use, valid ten minutes. The
    provider sends the browser back to ``GET /v1/oauth/{integration}/callback``.

    Args:
        company_id (UUID):
        integration (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[AuthorizeView | Problem]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
integration=integration,

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

) -> AuthorizeView | Problem | None:
    """ Authorize Integration

     Begin connecting the integration (company admins): the provider's authorize URL, with
    a state bound to this company and this admin, single use, valid ten minutes. The
    provider sends the browser back to ``GET /v1/oauth/{integration}/callback``.

    Args:
        company_id (UUID):
        integration (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        AuthorizeView | Problem
     """


    return (await asyncio_detailed(
        company_id=company_id,
integration=integration,
client=client,

    )).parsed
