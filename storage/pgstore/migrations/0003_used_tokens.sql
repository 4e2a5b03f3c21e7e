-- ID tokens already traded for a certificate, by SHA-256 of the token
-- (never the token), kept until the token expires: a token is accepted
-- once across every replica.
CREATE TABLE used_tokens (
    key        text        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX used_tokens_expires ON used_tokens (expires_at);
