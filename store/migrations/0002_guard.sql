-- kind: expand
-- The guard's durable side: each company's limits, and the ledger of every Claude call's
-- charge (the reservation made before it, the cost settled after). Redis holds the live
-- counters; this ledger is what they are rebuilt from after Redis loses them.

CREATE TABLE company_limits (
    company_id             uuid PRIMARY KEY REFERENCES companies (id),
    quest_cap_micros       bigint CHECK (quest_cap_micros > 0),
    quest_ceiling_micros   bigint CHECK (quest_ceiling_micros > 0),
    daily_budget_micros    bigint CHECK (daily_budget_micros > 0),
    monthly_budget_micros  bigint CHECK (monthly_budget_micros > 0),
    warn_pct               integer CHECK (warn_pct BETWEEN 1 AND 100),
    slow_pct               integer CHECK (slow_pct BETWEEN 1 AND 100),
    halt_pct               integer CHECK (halt_pct BETWEEN 1 AND 100),
    quests_per_minute      integer CHECK (quests_per_minute > 0),
    max_running_quests     integer CHECK (max_running_quests > 0),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- One row per Claude call attempt, keyed by quest:step:attempt. 'open' while the call runs;
-- 'settled' at the cost the API reported; 'kept' at the reservation when the call's outcome
-- is unknown (its worker died, or it was abandoned) — money that may have been spent.
CREATE TABLE charges (
    company_id       uuid NOT NULL,
    quest_id         uuid NOT NULL,
    charge_key       text NOT NULL,
    step             integer NOT NULL,
    model            text NOT NULL,
    reserved_micros  bigint NOT NULL CHECK (reserved_micros >= 0),
    cost_micros      bigint CHECK (cost_micros >= 0),
    status           text NOT NULL CHECK (status IN ('open', 'settled', 'kept')),
    usage            jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    settled_at       timestamptz,
    PRIMARY KEY (company_id, charge_key),
    FOREIGN KEY (company_id, quest_id) REFERENCES quests (company_id, id)
);
CREATE INDEX charges_quest ON charges (company_id, quest_id);
CREATE INDEX charges_company_time ON charges (company_id, created_at);

ALTER TABLE company_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE company_limits FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON company_limits
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());

ALTER TABLE charges ENABLE ROW LEVEL SECURITY;
ALTER TABLE charges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON charges
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());

GRANT SELECT, INSERT, UPDATE ON company_limits, charges TO system2_app;
