-- The ledger schema on PostgreSQL. Keep it equivalent to migrations/sqlite/0001_ledger.sql:
-- same tables, columns, constraints and indexes; only the dialect differs (BIGINT for 64-bit
-- integers, right() instead of substr()).
--
-- Timestamps are UTC RFC 3339 text with milliseconds (`2026-01-02T03:04:05.678Z`): fixed
-- width, so text order is time order on both backends. Amounts are integer micro-USD.
-- Hashes are lowercase hex BLAKE3 digests (64 characters).

-- One row per plan: its budget, what is reserved and spent against it, and the head of its
-- event chain (the last seq and its this_hash), which lets verification notice rows removed
-- from the tail of the chain.
CREATE TABLE plans (
    key TEXT NOT NULL PRIMARY KEY CHECK (length(key) > 0),
    budget_micro_usd BIGINT CHECK (budget_micro_usd IS NULL OR budget_micro_usd >= 0),
    reserved_micro_usd BIGINT NOT NULL DEFAULT 0 CHECK (reserved_micro_usd >= 0),
    spent_micro_usd BIGINT NOT NULL DEFAULT 0 CHECK (spent_micro_usd >= 0),
    head_seq BIGINT NOT NULL DEFAULT 0 CHECK (head_seq >= 0),
    head_hash TEXT NOT NULL CHECK (length(head_hash) = 64),
    created_at TEXT NOT NULL,
    CONSTRAINT plans_within_budget CHECK (
        budget_micro_usd IS NULL OR reserved_micro_usd + spent_micro_usd <= budget_micro_usd
    )
);

-- One row per execution recorded by `proctor run`.
CREATE TABLE executions (
    execution_id TEXT NOT NULL PRIMARY KEY,
    plan TEXT NOT NULL REFERENCES plans (key),
    processor_ref TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('mock', 'real')),
    write_prefix TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'success', 'failure')),
    image_digest TEXT,
    error_code TEXT,
    reserved_micro_usd BIGINT NOT NULL DEFAULT 0 CHECK (reserved_micro_usd >= 0),
    spent_micro_usd BIGINT CHECK (spent_micro_usd IS NULL OR spent_micro_usd >= 0),
    started_at TEXT NOT NULL,
    settled_at TEXT,
    CONSTRAINT executions_settled_iff_not_running CHECK ((status = 'running') = (settled_at IS NULL))
);

CREATE INDEX executions_by_plan ON executions (plan);

-- The hash chain of each plan: seq runs 1, 2, 3, … without gaps;
-- this_hash = BLAKE3(prev_hash bytes || payload), payload being JCS (RFC 8785) text of the
-- whole event body; the prev_hash of seq 1 is 32 zero bytes. The primary key is
-- UNIQUE (plan, seq). kind, execution_id and created_at are generated from the payload's
-- `kind`, `execution_id` and `at`: they cannot be edited apart from the hashed payload, and
-- a payload that is not JSON is refused.
CREATE TABLE events (
    plan TEXT NOT NULL REFERENCES plans (key),
    seq BIGINT NOT NULL CHECK (seq >= 1),
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL CHECK (length(prev_hash) = 64),
    this_hash TEXT NOT NULL CHECK (length(this_hash) = 64),
    kind TEXT NOT NULL GENERATED ALWAYS AS ((payload::jsonb ->> 'kind')) STORED,
    execution_id TEXT GENERATED ALWAYS AS ((payload::jsonb ->> 'execution_id')) STORED,
    created_at TEXT NOT NULL GENERATED ALWAYS AS ((payload::jsonb ->> 'at')) STORED,
    PRIMARY KEY (plan, seq)
);

CREATE INDEX events_by_execution ON events (execution_id) WHERE execution_id IS NOT NULL;

-- Write-path leases: a selector is an exact world path or a prefix (ending in `/`) that
-- covers everything below it. Held by one execution until released or expired.
CREATE TABLE leases (
    selector TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('exact', 'prefix')),
    holder TEXT NOT NULL,
    plan TEXT NOT NULL REFERENCES plans (key),
    acquired_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    CONSTRAINT leases_kind_matches_selector CHECK ((kind = 'prefix') = (right(selector, 1) = '/'))
);
