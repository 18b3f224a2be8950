from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.live_event_data import LiveEventData
from ...models.problem import Problem
from ...types import UNSET, Unset
from typing import cast
from uuid import UUID



def _get_kwargs(
    company_id: UUID,
    quest_id: UUID,
    *,
    last_event_id: None | str | Unset = UNSET,

) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(last_event_id, Unset):
        headers["last-event-id"] = last_event_id



    

    

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/companies/{company_id}/quests/{quest_id}/events".format(company_id=quote(str(company_id), safe=""),quest_id=quote(str(quest_id), safe=""),),
    }


    _kwargs["headers"] = headers
    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> LiveEventData | Problem | None:
    if response.status_code == 200:
        response_200 = LiveEventData.from_dict(response.text)



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


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[LiveEventData | Problem]:
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
    last_event_id: None | str | Unset = UNSET,

) -> Response[LiveEventData | Problem]:
    """ Watch Quest

     The quest's events as Server-Sent Events, from the start or after ``Last-Event-ID``,
    ending when the quest ends or after ``S2_SSE_MAX_LIFE_S`` (then reconnect with
    ``Last-Event-ID``: nothing is lost or repeated). 429 with ``Retry-After`` when the
    caller or its company has as many streams open as it may.

    Args:
        company_id (UUID):
        quest_id (UUID):
        last_event_id (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[LiveEventData | Problem]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
quest_id=quest_id,
last_event_id=last_event_id,

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
    last_event_id: None | str | Unset = UNSET,

) -> LiveEventData | Problem | None:
    """ Watch Quest

     The quest's events as Server-Sent Events, from the start or after ``Last-Event-ID``,
    ending when the quest ends or after ``S2_SSE_MAX_LIFE_S`` (then reconnect with
    ``Last-Event-ID``: nothing is lost or repeated). 429 with ``Retry-After`` when the
    caller or its company has as many streams open as it may.

    Args:
        company_id (UUID):
        quest_id (UUID):
        last_event_id (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        LiveEventData | Problem
     """


    return sync_detailed(
        company_id=company_id,
quest_id=quest_id,
client=client,
last_event_id=last_event_id,

    ).parsed

async def asyncio_detailed(
    company_id: UUID,
    quest_id: UUID,
    *,
    client: AuthenticatedClient,
    last_event_id: None | str | Unset = UNSET,

) -> Response[LiveEventData | Problem]:
    """ Watch Quest

     The quest's events as Server-Sent Events, from the start or after ``Last-Event-ID``,
    ending when the quest ends or after ``S2_SSE_MAX_LIFE_S`` (then reconnect with
    ``Last-Event-ID``: nothing is lost or repeated). 429 with ``Retry-After`` when the
    caller or its company has as many streams open as it may.

    Args:
        company_id (UUID):
        quest_id (UUID):
        last_event_id (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[LiveEventData | Problem]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
quest_id=quest_id,
last_event_id=last_event_id,

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
    last_event_id: None | str | Unset = UNSET,

) -> LiveEventData | Problem | None:
    """ Watch Quest

     The quest's events as Server-Sent Events, from the start or after ``Last-Event-ID``,
    ending when the quest ends or after ``S2_SSE_MAX_LIFE_S`` (then reconnect with
    ``Last-Event-ID``: nothing is lost or repeated). 429 with ``Retry-After`` when the
    caller or its company has as many streams open as it may.

    Args:
        company_id (UUID):
        quest_id (UUID):
        last_event_id (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        LiveEventData | Problem
     """


    return (await asyncio_detailed(
        company_id=company_id,
quest_id=quest_id,
client=client,
last_event_id=last_event_id,

    )).parsed
