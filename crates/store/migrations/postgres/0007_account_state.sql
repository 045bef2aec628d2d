-- Accounts can be disabled (their sessions end and log-in is refused) without deleting them, so their
-- names stay on the events they made.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
CREATE INDEX sessions_user ON sessions (user_id);
