-- Uses counted against the throttles every node of a cluster shares: log-in attempts per client
-- address, wrong passwords per username, the public pages' reports and look-ups per address. A row
-- is one use; rows older than the longest window are purged.
CREATE TABLE throttle_uses (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX throttle_uses_key ON throttle_uses (scope, key, at);
CREATE INDEX throttle_uses_at ON throttle_uses (at);
