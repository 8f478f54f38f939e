-- Nodes, their identity and the worker processes they run.
--
-- These are cluster rows, not tenant rows: a node belongs to the platform (owner_org NULL) or to
-- one organisation (a customer-managed node). The control plane filters by owner whenever an
-- organisation asks about its nodes; placement never puts another organisation's session on a
-- customer-managed node, and the node's worker refuses such work itself.

-- The cluster's own certificate authority. Its private key is sealed with a data key that the
-- master key wraps, so only the control plane can issue certificates.
CREATE TABLE cluster_ca (
    id              smallint PRIMARY KEY CHECK (id = 1),
    cert_pem        text NOT NULL,
    fingerprint     text NOT NULL,
    master_key_id   text NOT NULL,
    wrapped_key     bytea NOT NULL,
    sealed_key_pem  bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE nodes (
    id                uuid PRIMARY KEY,
    name              text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9.-]{0,62}$'),
    owner_org         uuid REFERENCES orgs (id),
    state             text NOT NULL CHECK (state IN ('joining', 'ready', 'draining', 'down', 'revoked')),
    -- Set by an operator; a node that comes back from `down` returns to draining, not ready.
    drain_requested   boolean NOT NULL DEFAULT false,
    state_reason      text,
    state_changed_at  timestamptz NOT NULL DEFAULT now(),
    labels            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    capabilities      jsonb NOT NULL,
    enabled_services  text[] NOT NULL DEFAULT '{worker}',
    agent_version     text NOT NULL,
    services          jsonb NOT NULL DEFAULT '[]',
    config_version    bigint,
    joined_at         timestamptz NOT NULL DEFAULT now(),
    last_report_at    timestamptz
);

-- Names are unique per owner, so a join cannot probe another organisation's node names.
CREATE UNIQUE INDEX nodes_name ON nodes (COALESCE(owner_org, '00000000-0000-0000-0000-000000000000'::uuid), name);
CREATE INDEX nodes_owner ON nodes (owner_org);

-- Every certificate issued to a node. Rows outlive their node so that a removed node's
-- certificates stay refused until they expire.
CREATE TABLE node_certificates (
    serial      text PRIMARY KEY,
    node_id     uuid NOT NULL,
    not_after   timestamptz NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX node_certificates_revoked ON node_certificates (not_after) WHERE revoked_at IS NOT NULL;

-- Single-use join tokens. Only the SHA-256 of the secret part is stored.
CREATE TABLE join_tokens (
    id                uuid PRIMARY KEY,
    token_hash        bytea NOT NULL UNIQUE,
    owner_org         uuid REFERENCES orgs (id),
    labels            jsonb NOT NULL DEFAULT '{}',
    enabled_services  text[] NOT NULL DEFAULT '{worker}',
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    used_at           timestamptz,
    used_by_node      uuid
);

-- Versioned configuration documents; the newest version is the one nodes should run.
CREATE TABLE node_config (
    version     bigserial PRIMARY KEY,
    body        jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object'),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Worker processes and their fencing numbers. A worker declared lost gets state `lost`; its
-- writes carry the old number and are refused until it registers again with a new one.
CREATE SEQUENCE worker_fence_seq;

CREATE TABLE workers (
    id          uuid PRIMARY KEY,
    node_id     uuid REFERENCES nodes (id) ON DELETE SET NULL,
    fence       bigint NOT NULL,
    state       text NOT NULL CHECK (state IN ('live', 'lost', 'stopped')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    reason      text
);

CREATE INDEX workers_node ON workers (node_id);

ALTER TABLE sessions ADD COLUMN worker_fence bigint;

GRANT SELECT, INSERT, UPDATE ON cluster_ca, node_certificates, join_tokens TO rdp_proxy_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON workers TO rdp_proxy_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON nodes TO rdp_proxy_service;
GRANT SELECT, INSERT ON node_config TO rdp_proxy_service;
GRANT USAGE ON SEQUENCE worker_fence_seq, node_config_version_seq TO rdp_proxy_service;
