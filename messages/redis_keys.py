"""Every Redis key, key prefix and channel the system uses, and what each one is.

Workers, the ingress, the runtime and the operator commands take key names from here, never
from each other. The names are part of what is deployed: keys written by the running version
are read by the next one, so a name changes only together with a way to carry its data over.

Two leaves name their own keys, because the leaves (``messages``, ``store``, ``guard``,
``vault``) do not import each other (the import-linter contract in ``pyproject.toml``): the
guard's counters (prefix ``s2:g``, in ``guard/spend.py`` and ``guard/admission.py``) and the
vault's encryption counts (``vault/counter.py``). Their rows say where they are defined.

Dramatiq names its own keys, in the namespace ``NAMESPACE`` that ``messages/transport.py``
gives the broker. The ones our code reads or writes itself have a builder here. The
benchmarks (``bench/``) also write throwaway keys of their own (``bench:...``,
``s2bench:...``) that nothing else reads.

``<name>`` in a key is the builder's argument of that name. "defined as" is the name here
(or the leaf module that builds the key); "written by" is the module that writes the key,
whose package owns it ("Dramatiq": the broker itself; ``dead_letters.py`` is
``workers/dead_letters.py``); "lifetime" is the key's expiry, or what removes it. Settings
are named by their environment variable.

| key                                           | defined as                              | type                             | written by                             | lifetime                              | holds                                                                        |
|-----------------------------------------------|-----------------------------------------|----------------------------------|----------------------------------------|---------------------------------------|------------------------------------------------------------------------------|
| s2:cancels                                    | CANCEL_CHANNEL                          | pub/sub channel                  | ingress: messages/notices.py           | nothing is stored                     | a cancelled quest's id, heard by every worker process                        |
| s2:cancel:<quest_id>                          | cancel_flag_key                         | string "1"                       | ingress: messages/notices.py           | 7 days                                | the quest is cancelled: checked as a step starts, polled while it runs       |
| s2:events:<company_id>                        | company_stream_key                      | stream, field e                  | workers/events.py                      | none; ~S2_EVENTS_MAXLEN entries       | the company's quest events (SSE, system2 demo)                               |
| s2:events:quest:<quest_id>                    | quest_stream_key                        | stream, field e                  | workers/events.py                      | 7 days after the last; ~2,000 entries | one quest's events (SSE, system2 quest watch)                                |
| s2:step-lease:<quest_id>                      | step_lease_key                          | string: owner token              | workers/lease.py                       | 6 s, renewed while the step runs      | which delivery runs the quest's step now                                     |
| s2:starts:<message_id>                        | starts_key                              | integer                          | workers/crash_isolation.py             | 2 days; deleted when the step ends    | starts of the message: those that never ended are crashes                    |
| s2:claude-wait:<quest_id>:<step>              | CLAUDE_WAIT_PREFIX                      | string: epoch s                  | workers/waits.py                       | 4 x S2_CLAUDE_OUTAGE_MAX_S, >= 60 s   | when the step began waiting for Claude to come back                          |
| s2:outage:<company_id>:<idempotency_key>      | provider_outage_key                     | string: epoch s                  | workers/integrations/tools.py          | 4 x S2_PROVIDER_OUTAGE_MAX_S          | when the tool call first found its provider down                             |
| s2:ratelimited:<company_id>:<idempotency_key> | provider_rate_limited_key               | hash: since, times               | workers/integrations/tools.py          | 4 x S2_PROVIDER_RATE_LIMIT_MAX_S      | the tool call's first 429 and how many it has had                            |
| s2:breaker:<provider>:failures                | breaker_failures_key                    | integer                          | workers/integrations/breaker.py        | S2_BREAKER_WINDOW_S                   | the provider's failures in the window, all companies                         |
| s2:breaker:<provider>:open                    | breaker_open_key                        | string "1"                       | workers/integrations/breaker.py        | S2_BREAKER_OPEN_S, or the pause       | present: the breaker is open, calls wait (system2 ops provider pause/resume) |
| s2:breaker:<provider>:tripped                 | breaker_tripped_key                     | string "1"                       | workers/integrations/breaker.py        | 4 x the open time                     | present: the next call is a probe (system2 ops provider pause/resume too)    |
| s2:lock:credential:<company_id>:<integration> | credential_lock_key                     | string: owner token              | workers/integrations/token_broker.py   | 15 s; deleted when done               | one worker is refreshing the company's OAuth token                           |
| s2:oauth:state:<nonce>                        | oauth_state_key                         | string: JSON                     | ingress/oauth_flow.py                  | 10 min; taken by the callback         | an OAuth connect flow's state: company, who, PKCE verifier (single use)      |
| s2:oauth:result:<nonce>                       | oauth_result_key                        | list                             | ingress/oauth_flow.py                  | 11 min                                | how the flow ended, for system2 integration connect waiting on it            |
| s2:sweeper                                    | SWEEPER_LOCK                            | string: token                    | workers/sweeper.py                     | S2_SWEEP_INTERVAL_S - 1 s             | a worker has swept for stuck quests this interval                            |
| s2:webhooks:sweeper                           | WEBHOOK_SWEEP_LOCK                      | string: token                    | workers/webhooks/dispatcher.py         | S2_WEBHOOK_SWEEP_S - 1 s              | a worker has looked for due webhook deliveries of every company this interval |
| s2:retention                                  | RETENTION_LOCK                          | string: token                    | workers/retention.py                   | S2_RETENTION_INTERVAL_S - 1 s         | a worker has redacted transcripts past their retention this interval         |
| s2:support:expiry                             | SUPPORT_EXPIRY_LOCK                     | string: token                    | workers/support_expiry.py              | 59 s                                  | a worker has recorded the support grants that expired this interval          |
| s2:workers:<host>:<pid>:<tag>                 | worker_beacon_key, WORKER_BEACON_PREFIX | string: JSON                     | workers/beacon.py                     | 6 s, rewritten every 2 s              | a live worker process: queues, messages done, last at                        |
| s2:dlq:reasons                                | DEAD_LETTER_REASONS                     | hash: id -> JSON                 | workers/dead_letters.py                | a field as long as its dead letter    | why each dead letter died (system2 dlq)                                      |
| s2:dlq:reasons:at                             | DEAD_LETTER_REASONS_AT                  | sorted set: id by ms             | workers/dead_letters.py                | as s2:dlq:reasons                     | when each reason was written, for pruning                                    |
| s2:dlq:reasons:scan                           | DEAD_LETTER_REASONS_SCAN                | string: cursor                   | workers/dead_letters.py                | no expiry                             | how far the sweep timing old reasons has got                                 |
| s2scratch:lock:<n>                            | scratch_lock_key                        | string: owner token              | system2/scratch.py                     | 1 hour                                | Redis database n is held by a test or benchmark                              |
| s2:g:q:<company_id>:<quest_id>                | guard/spend.py                          | hash: spent, reserved, cap, tier | workers/step_budget.py                 | 30 days                               | the quest's spend against its cap (micro-USD), rebuilt from Postgres if lost |
| s2:g:d:<company_id>:<YYYY-MM-DD>              | guard/spend.py                          | hash: spent, reserved, cap, tier | workers/step_budget.py                 | 3 days                                | the company's spend that UTC day, rebuilt from Postgres if lost              |
| s2:g:m:<company_id>:<YYYY-MM>                 | guard/spend.py                          | hash: spent, reserved, cap, tier | workers/step_budget.py                 | 40 days                               | the company's spend that UTC month, rebuilt from Postgres if lost            |
| s2:g:r:<company_id>:<charge_key>              | guard/spend.py                          | hash: amount, state, scope1..3   | workers/step_budget.py                 | 3 days                                | one Claude call's reservation: charged once                                  |
| s2:g:rate:<company_id>:<minute>               | guard/admission.py                      | integer                          | ingress/submit.py                      | 120 s                                 | quest starts in that minute (epoch ms // 60,000)                             |
| s2:g:slots:<company_id>                       | guard/admission.py                      | sorted set: quest id by ms       | workers/step_budget.py                 | 2 x S2_GUARD_SLOT_TTL_S               | the company's running quests, each until when                                |
| s2:fair:<queue>:ring                          | fair_ring_key                           | sorted set: company by pass      | workers/fair_queue.py                  | while the company has steps waiting   | companies with steps waiting, by their turn (stride scheduling)              |
| s2:fair:<queue>:clock                         | fair_clock_key                          | string: pass                     | workers/fair_queue.py                  | no expiry                             | the ring's turn when it last emptied: where the next company joins           |
| s2:fair:<queue>:<lane>:<company_id>           | fair_lane_key, fair_prefix              | list                             | workers/fair_queue.py                  | until fetched                         | the company's waiting step ids; lane started (go first) or new               |
| s2:fair:<queue>:waiting                       | fair_waiting_key                        | hash: company -> count           | workers/fair_queue.py                  | a field while it is above 0           | steps waiting in the company's lanes                                         |
| s2:fair:weights                               | FAIR_WEIGHTS                            | hash: company -> weight          | system2 guard set --weight             | no expiry (Postgres keeps it too)     | a company's share of the fleet relative to others (S2_FAIR_DEFAULT_WEIGHT)   |
| s2:vault:encryptions:<kid>                    | vault/counter.py                        | integer                          | ingress, workers, system2 (encrypting) | no expiry                             | encryptions done under that vault key                                        |
| dramatiq:<queue>                              | queue_key, NAMESPACE                    | list                             | Dramatiq                               | until fetched                         | ids of the messages waiting, oldest first (a fair queue's intake)            |
| dramatiq:<queue>.DQ                           | delayed_queue_key                       | list                             | Dramatiq                               | until fetched                         | ids of the delayed messages                                                  |
| dramatiq:<queue>.msgs                         | bodies_key                              | hash: id -> message              | Dramatiq; dead_letters.py              | until acked                           | message bodies (<queue> may end in .DQ)                                      |
| dramatiq:<queue>.XQ                           | dead_letters_key                        | sorted set: id by ms             | Dramatiq; dead_letters.py              | 7 days (dead_message_ttl)             | the dead letters, by when they died                                          |
| dramatiq:<queue>.XQ.msgs                      | dead_bodies_key                         | hash: id -> message              | Dramatiq; dead_letters.py              | as dramatiq:<queue>.XQ                | dead letters' bodies (undecodable: first 4 KiB)                              |
| dramatiq:__acks__.<worker_id>.<queue>         | acks_key                                | set                              | Dramatiq; dead_letters.py              | until acked or requeued               | ids a worker process holds, unacked                                          |
| dramatiq:__heartbeats__                       | heartbeats_key                          | sorted set: id by ms             | Dramatiq                               | S2_BROKER_HEARTBEAT_MS of silence     | consumer processes, by last heartbeat                                        |
"""

from __future__ import annotations

from uuid import UUID

# -- cancels and live events (ingress -> workers, workers -> watchers) ----------------------

CANCEL_CHANNEL = "s2:cancels"


def cancel_flag_key(quest_id: UUID | str) -> str:
    return f"s2:cancel:{quest_id}"


def company_stream_key(company_id: UUID | str) -> str:
    return f"s2:events:{company_id}"


def quest_stream_key(quest_id: UUID | str) -> str:
    return f"s2:events:quest:{quest_id}"


# -- running a step ------------------------------------------------------------------------


def step_lease_key(quest_id: UUID | str) -> str:
    return f"s2:step-lease:{quest_id}"


def starts_key(message_id: str) -> str:
    return f"s2:starts:{message_id}"


CLAUDE_WAIT_PREFIX = "s2:claude-wait"


def provider_outage_key(company_id: UUID | str, idempotency_key: str) -> str:
    return f"s2:outage:{company_id}:{idempotency_key}"


def provider_rate_limited_key(company_id: UUID | str, idempotency_key: str) -> str:
    return f"s2:ratelimited:{company_id}:{idempotency_key}"


def breaker_failures_key(provider: str) -> str:
    return f"s2:breaker:{provider}:failures"


def breaker_open_key(provider: str) -> str:
    return f"s2:breaker:{provider}:open"


def breaker_tripped_key(provider: str) -> str:
    return f"s2:breaker:{provider}:tripped"


def credential_lock_key(company_id: UUID | str, integration: str) -> str:
    return f"s2:lock:credential:{company_id}:{integration}"


# -- worker processes ----------------------------------------------------------------------

SWEEPER_LOCK = "s2:sweeper"
WEBHOOK_SWEEP_LOCK = "s2:webhooks:sweeper"
RETENTION_LOCK = "s2:retention"
SUPPORT_EXPIRY_LOCK = "s2:support:expiry"

WORKER_BEACON_PREFIX = "s2:workers:"


def oauth_state_key(nonce: str) -> str:
    return f"s2:oauth:state:{nonce}"


def oauth_result_key(nonce: str) -> str:
    return f"s2:oauth:result:{nonce}"


def worker_beacon_key(host: str, pid: int, tag: str) -> str:
    return f"{WORKER_BEACON_PREFIX}{host}:{pid}:{tag}"


DEAD_LETTER_REASONS = "s2:dlq:reasons"
DEAD_LETTER_REASONS_AT = "s2:dlq:reasons:at"
DEAD_LETTER_REASONS_SCAN = "s2:dlq:reasons:scan"


# -- fair dispatch of quest steps across companies (workers/fair_queue.py) -----------------

FAIR_WEIGHTS = "s2:fair:weights"


def fair_prefix(queue: str) -> str:
    return f"s2:fair:{queue}"


def fair_ring_key(queue: str) -> str:
    return f"{fair_prefix(queue)}:ring"


def fair_clock_key(queue: str) -> str:
    return f"{fair_prefix(queue)}:clock"


def fair_waiting_key(queue: str) -> str:
    return f"{fair_prefix(queue)}:waiting"


def fair_lane_key(queue: str, lane: str, company_id: UUID | str) -> str:
    """``lane``: ``started`` (steps of quests already running) or ``new`` (first steps)."""
    return f"{fair_prefix(queue)}:{lane}:{company_id}"


# -- tests and benchmarks ------------------------------------------------------------------


def scratch_lock_key(n: int) -> str:
    return f"s2scratch:lock:{n}"


# -- Dramatiq's own keys, for the code that reads or writes them directly ------------------

NAMESPACE = "dramatiq"


def queue_key(queue: str, *, namespace: str = NAMESPACE) -> str:
    return f"{namespace}:{queue}"


def delayed_queue_key(queue: str, *, namespace: str = NAMESPACE) -> str:
    return f"{namespace}:{queue}.DQ"


def bodies_key(queue: str, *, namespace: str = NAMESPACE) -> str:
    return f"{namespace}:{queue}.msgs"


def dead_letters_key(queue: str, *, namespace: str = NAMESPACE) -> str:
    return f"{namespace}:{queue}.XQ"


def dead_bodies_key(queue: str, *, namespace: str = NAMESPACE) -> str:
    return f"{namespace}:{queue}.XQ.msgs"


def acks_key(worker_id: str, queue: str, *, namespace: str = NAMESPACE) -> str:
    return f"{namespace}:__acks__.{worker_id}.{queue}"


def heartbeats_key(*, namespace: str = NAMESPACE) -> str:
    return f"{namespace}:__heartbeats__"
