-- Service accounts for outside systems (an Open311 app, the 12345 and 110 upstreams, an IoT gateway),
-- each bound to one channel, with API keys of which only the SHA-256 is kept; and the idempotency
-- keys of creating requests, written in the same transaction as what they created (a case or an
-- upload), so a retry finds the first result instead of creating a second one. Same tables and columns in the other backend.
CREATE TABLE service_accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES service_accounts (id),
    prefix TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE idempotency (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    case_id BIGINT,
    attachment_id BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);
