from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.problem import Problem
from ...models.quest_view import QuestView
from typing import cast
from uuid import UUID



def _get_kwargs(
    company_id: UUID,
    quest_id: UUID,

) -> dict[str, Any]:
    

    

    

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/companies/{company_id}/quests/{quest_id}".format(company_id=quote(str(company_id), safe=""),quest_id=quote(str(quest_id), safe=""),),
    }


    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Problem | QuestView | None:
    if response.status_code == 200:
        response_200 = QuestView.from_dict(response.json())



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


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[Problem | QuestView]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    company_id: UUID,
    quest_id: UUID,
    *,
    client: AuthenticatedClient,

) -> Response[Problem | QuestView]:
    """ Show Quest

    Args:
        company_id (UUID):
        quest_id (UUID):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | QuestView]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
quest_id=quest_id,

    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)

def sync(
    company_id: UUID,
    quest_id: UUID,
    *,
    client: AuthenticatedClient,

) -> Problem | QuestView | None:
    """ Show Quest

    Args:
        company_id (UUID):
        quest_id (UUID):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | QuestView
     """


    return sync_detailed(
        company_id=company_id,
quest_id=quest_id,
client=client,

    ).parsed

async def asyncio_detailed(
    company_id: UUID,
    quest_id: UUID,
    *,
    client: AuthenticatedClient,

) -> Response[Problem | QuestView]:
    """ Show Quest

    Args:
        company_id (UUID):
        quest_id (UUID):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | QuestView]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
quest_id=quest_id,

    )

    response = await client.get_async_httpx_client().request(
        **kwargs
    )

    return _build_response(client=client, response=response)

async def asyncio(
    company_id: UUID,
    quest_id: UUID,
    *,
    client: AuthenticatedClient,

) -> Problem | QuestView | None:
    """ Show Quest

    Args:
        company_id (UUID):
        quest_id (UUID):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | QuestView
     """


    return (await asyncio_detailed(
        company_id=company_id,
quest_id=quest_id,
client=client,

    )).parsed
