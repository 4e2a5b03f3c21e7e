-- One row per running replica, renewed by its heartbeat. A replica whose
-- lease has expired is gone (killed, partitioned): any other replica may
-- claim the row, mark the dead replica's running sessions interrupted and
-- delete it.
CREATE TABLE replica_leases (
    name       text        PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
