-- Signed checkpoints of the plans' chain heads, appended by `proctor ledger checkpoint`:
-- the statement's canonical JSON, its Ed25519 signature (hex) and the signing key's id.
-- A checkpoint is never changed; `ledger verify --public-key` checks the latest one.
CREATE TABLE checkpoints (
    seq BIGINT PRIMARY KEY CHECK (seq > 0),
    created_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    statement TEXT NOT NULL,
    signature TEXT NOT NULL
);
