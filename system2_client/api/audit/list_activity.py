from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.activity_page import ActivityPage
from ...models.problem import Problem
from ...types import UNSET, Unset
from typing import cast
from uuid import UUID
import datetime



def _get_kwargs(
    company_id: UUID,
    *,
    quest_id: None | Unset | UUID = UNSET,
    actor: None | str | Unset = UNSET,
    action: None | str | Unset = UNSET,
    since: datetime.datetime | None | Unset = UNSET,
    until: datetime.datetime | None | Unset = UNSET,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 50,

) -> dict[str, Any]:
    

    

    params: dict[str, Any] = {}

    json_quest_id: None | str | Unset
    if isinstance(quest_id, Unset):
        json_quest_id = UNSET
    elif isinstance(quest_id, UUID):
        json_quest_id = str(quest_id)
    else:
        json_quest_id = quest_id
    params["quest_id"] = json_quest_id

    json_actor: None | str | Unset
    if isinstance(actor, Unset):
        json_actor = UNSET
    else:
        json_actor = actor
    params["actor"] = json_actor

    json_action: None | str | Unset
    if isinstance(action, Unset):
        json_action = UNSET
    else:
        json_action = action
    params["action"] = json_action

    json_since: None | str | Unset
    if isinstance(since, Unset):
        json_since = UNSET
    elif isinstance(since, datetime.datetime):
        json_since = since.isoformat()
    else:
        json_since = since
    params["since"] = json_since

    json_until: None | str | Unset
    if isinstance(until, Unset):
        json_until = UNSET
    elif isinstance(until, datetime.datetime):
        json_until = until.isoformat()
    else:
        json_until = until
    params["until"] = json_until

    json_cursor: None | str | Unset
    if isinstance(cursor, Unset):
        json_cursor = UNSET
    else:
        json_cursor = cursor
    params["cursor"] = json_cursor

    params["limit"] = limit


    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}


    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/companies/{company_id}/activity".format(company_id=quote(str(company_id), safe=""),),
        "params": params,
    }


    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> ActivityPage | Problem | None:
    if response.status_code == 200:
        response_200 = ActivityPage.from_dict(response.json())



        return response_200

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())



        return response_401

    if response.status_code == 403:
        response_403 = Problem.from_dict(response.json())



        return response_403

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


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[ActivityPage | Problem]:
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
    quest_id: None | Unset | UUID = UNSET,
    actor: None | str | Unset = UNSET,
    action: None | str | Unset = UNSET,
    since: datetime.datetime | None | Unset = UNSET,
    until: datetime.datetime | None | Unset = UNSET,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 50,

) -> Response[ActivityPage | Problem]:
    """ List Activity

    Args:
        company_id (UUID):
        quest_id (None | Unset | UUID):
        actor (None | str | Unset):
        action (None | str | Unset):
        since (datetime.datetime | None | Unset):
        until (datetime.datetime | None | Unset):
        cursor (None | str | Unset):
        limit (int | Unset):  Default: 50.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ActivityPage | Problem]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
quest_id=quest_id,
actor=actor,
action=action,
since=since,
until=until,
cursor=cursor,
limit=limit,

    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)

def sync(
    company_id: UUID,
    *,
    client: AuthenticatedClient,
    quest_id: None | Unset | UUID = UNSET,
    actor: None | str | Unset = UNSET,
    action: None | str | Unset = UNSET,
    since: datetime.datetime | None | Unset = UNSET,
    until: datetime.datetime | None | Unset = UNSET,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 50,

) -> ActivityPage | Problem | None:
    """ List Activity

    Args:
        company_id (UUID):
        quest_id (None | Unset | UUID):
        actor (None | str | Unset):
        action (None | str | Unset):
        since (datetime.datetime | None | Unset):
        until (datetime.datetime | None | Unset):
        cursor (None | str | Unset):
        limit (int | Unset):  Default: 50.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ActivityPage | Problem
     """


    return sync_detailed(
        company_id=company_id,
client=client,
quest_id=quest_id,
actor=actor,
action=action,
since=since,
until=until,
cursor=cursor,
limit=limit,

    ).parsed

async def asyncio_detailed(
    company_id: UUID,
    *,
    client: AuthenticatedClient,
    quest_id: None | Unset | UUID = UNSET,
    actor: None | str | Unset = UNSET,
    action: None | str | Unset = UNSET,
    since: datetime.datetime | None | Unset = UNSET,
    until: datetime.datetime | None | Unset = UNSET,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 50,

) -> Response[ActivityPage | Problem]:
    """ List Activity

    Args:
        company_id (UUID):
        quest_id (None | Unset | UUID):
        actor (None | str | Unset):
        action (None | str | Unset):
        since (datetime.datetime | None | Unset):
        until (datetime.datetime | None | Unset):
        cursor (None | str | Unset):
        limit (int | Unset):  Default: 50.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ActivityPage | Problem]
     """


    kwargs = _get_kwargs(
        company_id=company_id,
quest_id=quest_id,
actor=actor,
action=action,
since=since,
until=until,
cursor=cursor,
limit=limit,

    )

    response = await client.get_async_httpx_client().request(
        **kwargs
    )

    return _build_response(client=client, response=response)

async def asyncio(
    company_id: UUID,
    *,
    client: AuthenticatedClient,
    quest_id: None | Unset | UUID = UNSET,
    actor: None | str | Unset = UNSET,
    action: None | str | Unset = UNSET,
    since: datetime.datetime | None | Unset = UNSET,
    until: datetime.datetime | None | Unset = UNSET,
    cursor: None | str | Unset = UNSET,
    limit: int | Unset = 50,

) -> ActivityPage | Problem | None:
    """ List Activity

    Args:
        company_id (UUID):
        quest_id (None | Unset | UUID):
        actor (None | str | Unset):
        action (None | str | Unset):
        since (datetime.datetime | None | Unset):
        until (datetime.datetime | None | Unset):
        cursor (None | str | Unset):
        limit (int | Unset):  Default: 50.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ActivityPage | Problem
     """


    return (await asyncio_detailed(
        company_id=company_id,
client=client,
quest_id=quest_id,
actor=actor,
action=action,
since=since,
until=until,
cursor=cursor,
limit=limit,

    )).parsed
