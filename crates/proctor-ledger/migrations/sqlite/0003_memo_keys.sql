-- The memo index: the memo key of each successful execution whose evidence lives in the
-- World's store, so a later run with the same key can look up its candidate sources with
-- one indexed query. Keep it equivalent to migrations/postgres/0003_memo_keys.sql.
--
-- The table is an index, not evidence: it is kept beside the chain, not in step with it. A
-- candidate is a hit only when its execution row says success and its stored receipt
-- re-derives the same key, with the receipt and index content ids of its settle event.
CREATE TABLE memo_keys (
    execution_id TEXT NOT NULL PRIMARY KEY,
    memo_key TEXT NOT NULL CHECK (length(memo_key) > 0)
) STRICT;

CREATE INDEX memo_keys_by_key ON memo_keys (memo_key);
