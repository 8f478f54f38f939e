-- Organisations, users, targets and held sessions with their event history.
-- Every tenant-owned table carries org_id.

CREATE TABLE orgs (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    password_hash  text NOT NULL,
    disabled_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    org_id      uuid NOT NULL REFERENCES orgs (id),
    user_id     uuid NOT NULL REFERENCES users (id),
    role        text NOT NULL CHECK (role IN ('member', 'admin')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE targets (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES orgs (id),
    name         text NOT NULL,
    host         text NOT NULL,
    port         integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    security     text NOT NULL CHECK (security IN ('auto', 'tls', 'nla')),
    username     text NOT NULL,
    -- NOTE: stored in clear until per-organisation envelope encryption exists; never returned by the API.
    password     text NOT NULL,
    domain       text,
    cert_sha256  bytea CHECK (cert_sha256 IS NULL OR length(cert_sha256) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);

CREATE TABLE sessions (
    id               uuid PRIMARY KEY,
    org_id           uuid NOT NULL REFERENCES orgs (id),
    owner_id         uuid NOT NULL REFERENCES users (id),
    target_id        uuid NOT NULL REFERENCES targets (id),
    state            text NOT NULL CHECK (state IN
                       ('requested', 'connecting', 'active', 'detached', 'terminated', 'failed', 'lost')),
    version          bigint NOT NULL DEFAULT 1,
    worker_id        uuid,
    width            integer NOT NULL CHECK (width BETWEEN 64 AND 8192),
    height           integer NOT NULL CHECK (height BETWEEN 64 AND 8192),
    control_fence    bigint NOT NULL DEFAULT 0,
    control_user_id  uuid REFERENCES users (id),
    control_since    timestamptz,
    reason           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz
);

CREATE INDEX sessions_org_created ON sessions (org_id, created_at DESC);
CREATE INDEX sessions_held_by_worker ON sessions (worker_id)
    WHERE state IN ('connecting', 'active', 'detached');

CREATE TABLE session_events (
    id          bigserial PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES orgs (id),
    session_id  uuid NOT NULL REFERENCES sessions (id),
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    from_state  text,
    to_state    text,
    version     bigint NOT NULL,
    actor_id    uuid REFERENCES users (id),
    actor_name  text,
    reason      text,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX session_events_session ON session_events (session_id, id);
