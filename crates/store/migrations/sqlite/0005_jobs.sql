-- Durable jobs and timers. A job is claimed with a lease; a runner that dies leaves its lease to run
-- out and the job is claimed again. `effect_key` is unique: enqueueing the same effect twice (two
-- nodes, a retry) keeps one job. Same tables and columns in ../postgres/.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    effect_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    run_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (state, run_at);
CREATE INDEX sessions_expiry ON sessions (expires_at);
