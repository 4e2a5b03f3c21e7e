-- Certificate serials: one sequence shared by every replica.
CREATE SEQUENCE cert_serial AS bigint START WITH 1 MINVALUE 1;

CREATE TABLE certs (
    serial    bigint PRIMARY KEY,
    key_id    text   NOT NULL,
    user_name text   NOT NULL,
    record    jsonb  NOT NULL
);
CREATE INDEX certs_key_id ON certs (key_id);
CREATE INDEX certs_user_name ON certs (user_name);

CREATE TABLE revocations (
    id     bigserial PRIMARY KEY,
    record jsonb     NOT NULL
);

-- The audit chain. audit_tip holds exactly one row; every append locks it
-- (SELECT ... FOR UPDATE), so appends from all replicas form one chain.
CREATE TABLE audit_tip (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint  NOT NULL,
    hash text    NOT NULL
);
INSERT INTO audit_tip (id, seq, hash) VALUES (1, 0, '');

CREATE TABLE audit (
    seq   bigint PRIMARY KEY,
    hash  text   NOT NULL,
    event bytea  NOT NULL -- the exact canonical JSON line that was hashed
);

CREATE TABLE requests (
    id         text        PRIMARY KEY,
    created_at timestamptz NOT NULL,
    record     jsonb       NOT NULL
);

CREATE TABLE sessions (
    id        text        PRIMARY KEY,
    user_name text        NOT NULL,
    target    text        NOT NULL,
    status    text        NOT NULL,
    start     timestamptz NOT NULL,
    record    jsonb       NOT NULL
);
CREATE INDEX sessions_start ON sessions (start);
CREATE INDEX sessions_user_name ON sessions (user_name);

CREATE TABLE kv (
    key   text  PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE recording_chunks (
    session text    NOT NULL,
    seq     integer NOT NULL CHECK (seq >= 0),
    data    bytea   NOT NULL,
    PRIMARY KEY (session, seq)
);
