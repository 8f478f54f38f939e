-- Multi-tenancy: five roles, disabled members, encrypted credentials, target labels and size
-- limits, policies, logins with rotating refresh tokens, API keys, the hash-chained audit trail,
-- and row-level security as the second wall between organisations.
--
-- The services log in as a role that is a member of `rdp_proxy_service`. That role owns nothing,
-- so row-level security applies to it, and it cannot bypass the policies below. Each transaction
-- names its organisation with `SELECT set_config('rdp_proxy.org_id', '<uuid>', true)`; without it
-- a tenant table shows no rows and accepts none.

DO $$
BEGIN
    CREATE ROLE rdp_proxy_service NOLOGIN NOSUPERUSER NOBYPASSRLS;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;

CREATE FUNCTION rdp_proxy_current_org() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('rdp_proxy.org_id', true), '')::uuid $$;

-- Roles and members ---------------------------------------------------------------------------

ALTER TABLE memberships DROP CONSTRAINT memberships_role_check;
ALTER TABLE memberships ADD CONSTRAINT memberships_role_check
    CHECK (role IN ('owner', 'admin', 'operator', 'member', 'auditor'));
ALTER TABLE memberships ADD COLUMN disabled_at timestamptz;
-- An existing user added by another organisation's admin is invited: the membership counts only
-- once the user accepts it. Memberships from before this version count as accepted.
ALTER TABLE memberships ADD COLUMN accepted_at timestamptz;
UPDATE memberships SET accepted_at = created_at;

-- User names are compared without case: "alice" and "ALICE" are one account.
CREATE UNIQUE INDEX users_name_lower ON users (lower(name));

-- Credentials and targets ---------------------------------------------------------------------

-- One data key per organisation, wrapped by the master key named by master_key_id.
CREATE TABLE org_keys (
    org_id         uuid PRIMARY KEY REFERENCES orgs (id),
    master_key_id  text NOT NULL,
    wrapped        bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credentials (
    id               uuid PRIMARY KEY,
    org_id           uuid NOT NULL REFERENCES orgs (id),
    name             text NOT NULL,
    username         text NOT NULL,
    domain           text,
    -- nonce || AES-256-GCM ciphertext of the password under the organisation's data key, bound
    -- to org_id and id.
    sealed           bytea,
    -- Passwords of targets created before encryption existed. The control plane seals them at
    -- start and clears this column; nothing reads it otherwise.
    legacy_password  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name),
    UNIQUE (org_id, id),
    CHECK (sealed IS NOT NULL OR legacy_password IS NOT NULL)
);

ALTER TABLE targets ADD COLUMN credential_id uuid;
ALTER TABLE targets ADD COLUMN labels jsonb NOT NULL DEFAULT '{}'::jsonb
    CHECK (jsonb_typeof(labels) = 'object');
ALTER TABLE targets ADD COLUMN max_width integer CHECK (max_width BETWEEN 64 AND 8192);
ALTER TABLE targets ADD COLUMN max_height integer CHECK (max_height BETWEEN 64 AND 8192);
ALTER TABLE targets ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE targets ADD COLUMN deleted_at timestamptz;

INSERT INTO credentials (id, org_id, name, username, domain, legacy_password)
    SELECT gen_random_uuid(), org_id, name, username, domain, password FROM targets;
UPDATE targets t SET credential_id = c.id
    FROM credentials c WHERE c.org_id = t.org_id AND c.name = t.name;
ALTER TABLE targets ALTER COLUMN credential_id SET NOT NULL;
-- The credential must belong to the target's organisation.
ALTER TABLE targets ADD CONSTRAINT targets_credential_same_org
    FOREIGN KEY (org_id, credential_id) REFERENCES credentials (org_id, id);
ALTER TABLE targets DROP COLUMN username, DROP COLUMN password, DROP COLUMN domain;
-- Names stay unique among live targets only, so a deleted target's name can be reused while its
-- sessions keep pointing at the old row.
ALTER TABLE targets DROP CONSTRAINT targets_org_id_name_key;
CREATE UNIQUE INDEX targets_live_name ON targets (org_id, name) WHERE deleted_at IS NULL;

-- A session's target must belong to the session's organisation.
ALTER TABLE targets ADD CONSTRAINT targets_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE sessions ADD CONSTRAINT sessions_target_same_org
    FOREIGN KEY (org_id, target_id) REFERENCES targets (org_id, id);

-- Sessions carry the limits the policy granted when they were opened.
ALTER TABLE sessions ADD COLUMN idle_detach_secs integer CHECK (idle_detach_secs > 0);
ALTER TABLE sessions ADD COLUMN max_duration_secs integer CHECK (max_duration_secs > 0);

-- Policies ------------------------------------------------------------------------------------

CREATE TABLE policies (
    org_id           uuid PRIMARY KEY REFERENCES orgs (id),
    text             text NOT NULL,
    version          bigint NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       uuid REFERENCES users (id),
    updated_by_name  text
);

-- Logins, refresh tokens, API keys -------------------------------------------------------------

-- One row per login: access tokens name it, and revoking it ends every token of that login.
CREATE TABLE logins (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES orgs (id),
    user_id         uuid NOT NULL REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoked_reason  text
);
CREATE INDEX logins_user ON logins (org_id, user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    org_id      uuid NOT NULL REFERENCES orgs (id),
    login_id    uuid NOT NULL REFERENCES logins (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_login ON refresh_tokens (login_id);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES orgs (id),
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('owner', 'admin', 'operator', 'member', 'auditor')),
    secret_hash   bytea NOT NULL CHECK (length(secret_hash) = 32),
    created_by    uuid REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (org_id, name) WHERE revoked_at IS NULL;

-- Audit trail ---------------------------------------------------------------------------------

-- Append-only and hash-chained per organisation: hash = SHA-256 over the previous hash and this
-- record's fields (see rdp_proxy_core::audit). audit_heads holds each chain's last link and is
-- locked by every append, which orders appends within an organisation.
CREATE TABLE audit_events (
    org_id       uuid NOT NULL REFERENCES orgs (id),
    seq          bigint NOT NULL CHECK (seq > 0),
    at           timestamptz NOT NULL,
    actor_kind   text NOT NULL CHECK (actor_kind IN ('user', 'api_key', 'worker', 'system')),
    actor_id     uuid,
    actor_name   text,
    action       text NOT NULL,
    object_kind  text NOT NULL,
    object_id    text,
    result       text NOT NULL CHECK (result IN ('ok', 'denied', 'failed')),
    reason       text,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash    bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash         bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (org_id, seq)
);
CREATE INDEX audit_events_action ON audit_events (org_id, action, seq DESC);

CREATE TABLE audit_heads (
    org_id  uuid PRIMARY KEY REFERENCES orgs (id),
    seq     bigint NOT NULL,
    hash    bytea NOT NULL CHECK (length(hash) = 32)
);

CREATE FUNCTION rdp_proxy_audit_is_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'audit records are append-only'; END $$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION rdp_proxy_audit_is_append_only();

-- Row-level security --------------------------------------------------------------------------

DO $$
DECLARE
    tenant_table text;
BEGIN
    FOREACH tenant_table IN ARRAY ARRAY['memberships', 'targets', 'credentials', 'org_keys', 'sessions',
            'session_events', 'policies', 'logins', 'refresh_tokens', 'api_keys', 'audit_events',
            'audit_heads']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format('CREATE POLICY org_isolation ON %I USING (org_id = rdp_proxy_current_org())
                        WITH CHECK (org_id = rdp_proxy_current_org())', tenant_table);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE ON orgs, users TO rdp_proxy_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON memberships, targets, credentials, org_keys, sessions, policies,
    logins, refresh_tokens, api_keys, audit_heads TO rdp_proxy_service;
GRANT SELECT, INSERT ON session_events, audit_events TO rdp_proxy_service;
GRANT USAGE ON SEQUENCE session_events_id_seq TO rdp_proxy_service;

-- Cross-organisation look-ups ------------------------------------------------------------------
-- The few questions that span organisations are answered by these functions, which run as the
-- schema owner and return ids only; the caller then works inside each organisation as usual.

-- The organisations a user belongs to, for login and the organisation picker.
CREATE FUNCTION rdp_proxy_user_orgs(p_user uuid)
    RETURNS TABLE (org_id uuid, org_name text, role text, disabled boolean, pending boolean)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT m.org_id, o.name, m.role, m.disabled_at IS NOT NULL, m.accepted_at IS NULL
        FROM memberships m JOIN orgs o ON o.id = m.org_id
        WHERE m.user_id = p_user ORDER BY m.created_at, m.org_id
    $$;

-- Sessions held by workers (connecting, active or detached), for the lost-worker sweep.
CREATE FUNCTION rdp_proxy_held_sessions()
    RETURNS TABLE (org_id uuid, session_id uuid, worker_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT org_id, id, worker_id FROM sessions
        WHERE worker_id IS NOT NULL AND state IN ('connecting', 'active', 'detached')
    $$;

-- Sessions no worker claimed within p_seconds.
CREATE FUNCTION rdp_proxy_stale_requested(p_seconds double precision)
    RETURNS TABLE (org_id uuid, session_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT org_id, id FROM sessions
        WHERE state = 'requested' AND created_at < now() - make_interval(secs => p_seconds)
    $$;

REVOKE EXECUTE ON FUNCTION rdp_proxy_user_orgs(uuid), rdp_proxy_held_sessions(),
    rdp_proxy_stale_requested(double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rdp_proxy_user_orgs(uuid), rdp_proxy_held_sessions(),
    rdp_proxy_stale_requested(double precision), rdp_proxy_current_org() TO rdp_proxy_service;
