-- Idempotency keys for the administrators' creating requests too: a new account, service account or
-- API key, written in the same transaction as what the key made. Same columns in the other backend.
ALTER TABLE idempotency ADD COLUMN user_id BIGINT;
ALTER TABLE idempotency ADD COLUMN service_account_id BIGINT;
ALTER TABLE idempotency ADD COLUMN api_key_id BIGINT;
