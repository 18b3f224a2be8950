from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.cancel_request import CancelRequest
from ...models.problem import Problem
from ...models.quest_accepted import QuestAccepted
from ...models.quest_view import QuestView
from ...types import UNSET, Unset
from typing import cast
from uuid import UUID



def _get_kwargs(
    company_id: UUID,
    quest_id: UUID,
    *,
    body: CancelRequest | None | Unset = UNSET,

) -> dict[str, Any]:
    headers: dict[str, Any] = {}


    

    

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/companies/{company_id}/quests/{quest_id}/cancel".format(company_id=quote(str(company_id), safe=""),quest_id=quote(str(quest_id), safe=""),),
    }

    
    if isinstance(body, CancelRequest):
        _kwargs["json"] = body.to_dict()
    else:
        _kwargs["json"] = body

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Problem | QuestAccepted | QuestView | None:
    if response.status_code == 200:
        response_200 = QuestView.from_dict(response.json())



        return response_200

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


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[Problem | QuestAccepted | QuestView]:
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
    body: CancelRequest | None | Unset = UNSET,

) -> Response[Problem | QuestAccepted | QuestView]:
    """ Cancel Quest

     Stop the quest now, even mid-call. Admins may cancel any quest of the company, a member
    the quests they submitted.

    Args:
        company_id (UUID):
        quest_id (UUID):
        body (CancelRequest | None | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | QuestAccepted | QuestView]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
quest_id=quest_id,
body=body,

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
    body: CancelRequest | None | Unset = UNSET,

) -> Problem | QuestAccepted | QuestView | None:
    """ Cancel Quest

     Stop the quest now, even mid-call. Admins may cancel any quest of the company, a member
    the quests they submitted.

    Args:
        company_id (UUID):
        quest_id (UUID):
        body (CancelRequest | None | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | QuestAccepted | QuestView
     """


    return sync_detailed(
        company_id=company_id,
quest_id=quest_id,
client=client,
body=body,

    ).parsed

async def asyncio_detailed(
    company_id: UUID,
    quest_id: UUID,
    *,
    client: AuthenticatedClient,
    body: CancelRequest | None | Unset = UNSET,

) -> Response[Problem | QuestAccepted | QuestView]:
    """ Cancel Quest

     Stop the quest now, even mid-call. Admins may cancel any quest of the company, a member
    the quests they submitted.

    Args:
        company_id (UUID):
        quest_id (UUID):
        body (CancelRequest | None | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | QuestAccepted | QuestView]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
quest_id=quest_id,
body=body,

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
    body: CancelRequest | None | Unset = UNSET,

) -> Problem | QuestAccepted | QuestView | None:
    """ Cancel Quest

     Stop the quest now, even mid-call. Admins may cancel any quest of the company, a member
    the quests they submitted.

    Args:
        company_id (UUID):
        quest_id (UUID):
        body (CancelRequest | None | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | QuestAccepted | QuestView
     """


    return (await asyncio_detailed(
        company_id=company_id,
quest_id=quest_id,
client=client,
body=body,

    )).parsed
