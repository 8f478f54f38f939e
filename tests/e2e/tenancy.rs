//! Organisation isolation. Every principal of organisation A (one user per role and an API key)
//! calls every endpoint that takes an id, once with an id of organisation B and once with a
//! random id. Both requests must get the same error, no response may contain B's ids or
//! names, and B's rows must be byte-for-byte unchanged afterwards. Passwords, tokens and key
//! secrets must appear in no response (apart from the one that issued a token) and in no log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdp_proxy_e2e::{Api, Stack};
use serde_json::{Value, json};

const ORG_A: &str = "org-a";
const ORG_B: &str = "org-b";

/// Organisation A's users, one per role: name, password, role.
const A_USERS: [(&str, &str, &str); 5] = [
    ("alpha-owner", "Alpha-Owner-Pass-1", "owner"),
    ("alpha-admin", "Alpha-Admin-Pass-2", "admin"),
    ("alpha-operator", "Alpha-Operator-Pass-3", "operator"),
    ("alpha-member", "Alpha-Member-Pass-4", "member"),
    ("alpha-auditor", "Alpha-Auditor-Pass-5", "auditor"),
];
const B_OWNER: (&str, &str) = ("beta-owner", "Beta-Owner-Pass-6");
const B_MEMBER: (&str, &str) = ("beta-member", "Beta-Member-Pass-7");

const A_TARGET: &str = "alpha-desk";
const A_TARGET_PASSWORD: &str = "Alpha-Target-Secret-8";
const B_TARGET: &str = "beta-desk";
const B_TARGET_USER: &str = "beta-rdp-user";
const B_TARGET_PASSWORD: &str = "Beta-Target-Secret-9";
const B_CREDENTIAL: &str = "beta-known-credential";
const B_CREDENTIAL_USER: &str = "beta-credential-user";
const B_CREDENTIAL_PASSWORD: &str = "Cr3dential-Known-Secret";
const B_API_KEY: &str = "beta-automation";

/// Port with no listener on loopback in the test environment, so sessions on targets there fail
/// at once with "connection refused".
const CLOSED_PORT: u16 = 1;

/// Tables that carry `org_id`. Each must contain the same rows of B before and after the walk.
const TENANT_TABLES: [&str; 12] = [
    "memberships",
    "targets",
    "credentials",
    "org_keys",
    "sessions",
    "session_events",
    "policies",
    "logins",
    "refresh_tokens",
    "api_keys",
    "audit_events",
    "audit_heads",
];

/// Lists and other reads without an id in the path. `{b_owner}` is replaced by the id of B's owner.
const LIST_PATHS: [&str; 12] = [
    "/api/v1/targets",
    "/api/v1/credentials",
    "/api/v1/members",
    "/api/v1/api-keys",
    "/api/v1/audit",
    "/api/v1/audit?actor_id={b_owner}",
    "/api/v1/audit/verify",
    "/api/v1/sessions",
    "/api/v1/sessions?state=failed",
    "/api/v1/policy",
    "/api/v1/policy/default",
    "/api/v1/me",
];

/// Maximum pages read from one list, so a cursor that never ends fails the test.
const MAX_PAGES: usize = 50;

/// Which of organisation B's ids a case sends.
#[derive(Clone, Copy, Debug)]
enum Foreign {
    Org,
    Target,
    Credential,
    Owner,
    Member,
    ApiKey,
    Session,
}

/// One request of the walk. In `path` and `body`, `{id}` is replaced by the id under test,
/// `{own_target}` by a target of the caller's own organisation, and `{user}` and `{password}` by
/// the caller's login. An `anonymous` case sends no bearer token and is skipped for the API key.
struct Case {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    foreign: Foreign,
    anonymous: bool,
}

fn case(method: &'static str, path: &'static str, body: Option<Value>, foreign: Foreign) -> Case {
    Case {
        method,
        path,
        body,
        foreign,
        anonymous: false,
    }
}

/// Builds the table of cases: every route with an id in its path, and every body field that
/// names an object. One line per request, so the table reads as a list of routes.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Foreign::*;
    let rename = Some(json!({"name": "renamed-by-a"}));
    let credential_change = Some(json!({"name": "renamed-by-a", "password": "Overwrite-From-A-10"}));
    let target_with_credential = Some(json!({
        "name": "alpha-with-foreign-credential",
        "host": "127.0.0.1",
        "port": CLOSED_PORT,
        "credential_id": "{id}",
    }));
    let login = Some(json!({"username": "{user}", "password": "{password}", "org_id": "{id}"}));
    vec![
        case("GET",    "/api/v1/targets/{id}",                None,                                    Target),
        case("PATCH",  "/api/v1/targets/{id}",                rename,                                  Target),
        case("DELETE", "/api/v1/targets/{id}",                None,                                    Target),
        case("GET",    "/api/v1/credentials/{id}",            None,                                    Credential),
        case("PATCH",  "/api/v1/credentials/{id}",            credential_change,                       Credential),
        case("DELETE", "/api/v1/credentials/{id}",            None,                                    Credential),
        case("GET",    "/api/v1/members/{id}",                None,                                    Member),
        case("PATCH",  "/api/v1/members/{id}",                Some(json!({"role": "admin"})),          Member),
        case("DELETE", "/api/v1/members/{id}",                None,                                    Member),
        case("GET",    "/api/v1/members/{id}",                None,                                    Owner),
        case("PATCH",  "/api/v1/members/{id}",                Some(json!({"disabled": true})),         Owner),
        case("DELETE", "/api/v1/members/{id}",                None,                                    Owner),
        case("DELETE", "/api/v1/api-keys/{id}",               None,                                    ApiKey),
        case("GET",    "/api/v1/sessions/{id}",               None,                                    Session),
        case("GET",    "/api/v1/sessions/{id}/events",        None,                                    Session),
        case("POST",   "/api/v1/sessions/{id}/attach",        Some(json!({"mode": "control"})),        Session),
        case("POST",   "/api/v1/sessions/{id}/attach",        Some(json!({"mode": "takeover"})),       Session),
        case("POST",   "/api/v1/sessions/{id}/attach",        Some(json!({"mode": "observe"})),        Session),
        case("POST",   "/api/v1/sessions/{id}/detach",        Some(json!({})),                         Session),
        case("POST",   "/api/v1/sessions/{id}/terminate",     Some(json!({"reason": "from A"})),       Session),
        case("POST",   "/api/v1/sessions",                    Some(json!({"target_id": "{id}"})),      Target),
        case("POST",   "/api/v1/targets",                     target_with_credential,                  Credential),
        case("PATCH",  "/api/v1/targets/{own_target}",        Some(json!({"credential_id": "{id}"})),  Credential),
        case("POST",   "/api/v1/auth/switch",                 Some(json!({"org_id": "{id}"})),         Org),
        case("POST",   "/api/v1/invitations/{id}/accept",     Some(json!({})),                         Org),
        case("DELETE", "/api/v1/invitations/{id}",            None,                                    Org),
        anonymous(case("POST", "/api/v1/login", login, Org)),
    ]
}

fn anonymous(case: Case) -> Case {
    Case {
        anonymous: true,
        ..case
    }
}

/// A caller from organisation A.
#[derive(Clone)]
struct Principal {
    /// The role, or `api-key`.
    label: &'static str,
    token: String,
    /// User name and password, or `None` for the API key.
    login: Option<(&'static str, &'static str)>,
}

/// Organisation B's ids, and every id and name of B that no response to A may contain.
struct OrgB {
    org: String,
    owner: String,
    member: String,
    target: String,
    credential: String,
    api_key: String,
    session: String,
    markers: Vec<String>,
}

impl OrgB {
    fn id(&self, foreign: Foreign) -> &str {
        match foreign {
            Foreign::Org => &self.org,
            Foreign::Target => &self.target,
            Foreign::Credential => &self.credential,
            Foreign::Owner => &self.owner,
            Foreign::Member => &self.member,
            Foreign::ApiKey => &self.api_key,
            Foreign::Session => &self.session,
        }
    }
}

/// A secret that must appear in no response body except the one that issued it, and in no log.
struct Secret {
    description: String,
    value: String,
    issued_in: Option<usize>,
}

/// Every response body the test received, and the secrets to look for in them.
#[derive(Default)]
struct Transcript {
    bodies: Vec<(String, String)>,
    secrets: Vec<Secret>,
}

impl Transcript {
    /// Stores a response body and returns its index.
    fn record(&mut self, description: impl Into<String>, body: impl Into<String>) -> usize {
        self.bodies.push((description.into(), body.into()));
        self.bodies.len() - 1
    }

    fn secret(&mut self, description: impl Into<String>, value: &str, issued_in: Option<usize>) {
        let description = description.into();
        assert!(!value.is_empty(), "secret {description} is empty");
        self.secrets.push(Secret {
            description,
            value: value.to_owned(),
            issued_in,
        });
    }

    /// Records a login response and its access and refresh tokens as secrets issued by it.
    fn login(&mut self, user: &str, api: &Api) -> Result<()> {
        let index = self.record(format!("login of {user}"), api.login.to_string());
        let refresh = api.login["refresh_token"]
            .as_str()
            .context("login without refresh_token")?;
        self.secret(format!("access token of {user}"), api.token(), Some(index));
        self.secret(format!("refresh token of {user}"), refresh, Some(index));
        // The part after the last `_` is the random secret, and the rest names the organisation.
        let random_part = refresh.rsplit('_').next().unwrap_or_default();
        self.secret(format!("refresh token secret of {user}"), random_part, Some(index));
        Ok(())
    }

    /// Records an API key creation response and the key as a secret issued by it.
    fn api_key(&mut self, creator: &str, created: &Value) -> Result<String> {
        let index = self.record(format!("API key creation by {creator}"), created.to_string());
        let key = created["key"].as_str().context("API key response without key")?;
        self.secret(format!("API key of {creator}"), key, Some(index));
        let random_part = key.rsplit('_').next().unwrap_or_default();
        self.secret(format!("API key secret of {creator}"), random_part, Some(index));
        Ok(key.to_owned())
    }
}

/// One id case as sent by one principal: the responses to B's id and to a random id.
struct Exchange {
    principal: &'static str,
    request: String,
    foreign: (u16, String),
    random: (u16, String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_ids_leak_nothing_and_change_nothing() -> Result<()> {
    let started = Instant::now();
    let stack = tokio::task::spawn_blocking(create_stack).await??;
    let base = stack.base_url();
    let http = reqwest::Client::new();
    let mut transcript = Transcript::default();

    let (principals, own_target) = set_up_org_a(&stack, &mut transcript).await?;
    let org_b = set_up_org_b(&stack, &mut transcript).await?;
    let tables_before = tokio::task::block_in_place(|| snapshot_org(&stack, &org_b))?;

    let cases = Arc::new(cases());
    let exchanges = walk_ids(&http, &base, &principals, &cases, &org_b, &own_target).await?;
    let mut problems = Vec::new();
    for exchange in &exchanges {
        check_exchange(exchange, &org_b, &mut problems);
        let request = format!("{} {}", exchange.principal, exchange.request);
        transcript.record(format!("{request} with B's id"), exchange.foreign.1.clone());
        transcript.record(format!("{request} with a random id"), exchange.random.1.clone());
    }
    let lists_read = walk_lists(&http, &base, &principals, &org_b, &mut transcript, &mut problems).await?;
    assert!(
        problems.is_empty(),
        "{} isolation problems:\n{}",
        problems.len(),
        problems.join("\n")
    );

    let tables_after = tokio::task::block_in_place(|| snapshot_org(&stack, &org_b))?;
    for (table, before) in &tables_before {
        assert_eq!(
            tables_after.get(table),
            Some(before),
            "B's rows in {table} changed during the walk"
        );
    }

    let logs = stack.logs();
    let secret_problems = find_secrets(&transcript, &logs);
    assert!(
        secret_problems.is_empty(),
        "{} secrets exposed:\n{}",
        secret_problems.len(),
        secret_problems.join("\n")
    );

    let not_found = exchanges.iter().filter(|exchange| exchange.foreign.0 == 404).count();
    println!(
        "tenancy: {} id cases x {} principals = {} request pairs ({} got 404, {} got 403), \
         {} list pages, {} tables of B unchanged, {} secrets absent from {} responses and {} KiB of logs, in {:.1} s",
        cases.len(),
        principals.len(),
        exchanges.len(),
        not_found,
        exchanges.len() - not_found,
        lists_read,
        tables_before.len(),
        transcript.secrets.len(),
        transcript.bodies.len(),
        logs.len() / 1024,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Starts the stack and creates both organisations' users and one target in each.
fn create_stack() -> Result<Stack> {
    let stack = Stack::start(Path::new(env!("CARGO_BIN_EXE_rdp-proxy")))?;
    for (name, password, role) in A_USERS {
        stack.add_user_in(ORG_A, name, password, role)?;
    }
    stack.add_user_in(ORG_B, B_OWNER.0, B_OWNER.1, "owner")?;
    stack.add_user_in(ORG_B, B_MEMBER.0, B_MEMBER.1, "member")?;
    stack.add_target_in(
        ORG_A,
        A_TARGET,
        CLOSED_PORT,
        "auto",
        "alpha-rdp-user",
        A_TARGET_PASSWORD,
    )?;
    stack.add_target_in(ORG_B, B_TARGET, CLOSED_PORT, "auto", B_TARGET_USER, B_TARGET_PASSWORD)?;
    Ok(stack)
}

/// Logs in A's users, creates A's API key and a failed session of A's member. Returns the
/// principals and the id of A's target.
async fn set_up_org_a(stack: &Stack, transcript: &mut Transcript) -> Result<(Vec<Principal>, String)> {
    let base = stack.base_url();
    let mut principals = Vec::new();
    let mut apis = BTreeMap::new();
    for (name, password, role) in A_USERS {
        transcript.secret(format!("password of {name}"), password, None);
        let api = Api::login(&base, name, password).await?;
        transcript.login(name, &api)?;
        assert_eq!(
            api.login["org"]["name"], ORG_A,
            "{name} logged in to the wrong organisation"
        );
        principals.push(Principal {
            label: role,
            token: api.token().to_owned(),
            login: Some((name, password)),
        });
        apis.insert(role, api);
    }

    let owner = &apis["owner"];
    let created = owner
        .post("/api/v1/api-keys", json!({"name": "alpha-automation", "role": "admin"}))
        .await?;
    let key = transcript.api_key("A's owner", &created)?;
    principals.push(Principal {
        label: "api-key",
        token: key,
        login: None,
    });

    transcript.secret("password of A's target", A_TARGET_PASSWORD, None);
    let own_target = owner.target_id(A_TARGET).await?;
    let session = open_failed_session(&apis["member"], &own_target).await?;
    transcript.record("A's member's session", session.to_string());
    Ok((principals, own_target))
}

/// Gives organisation B a credential, an API key, a saved policy, audit records and a failed
/// session, checks that B's owner can read each object, and returns B's ids and names.
async fn set_up_org_b(stack: &Stack, transcript: &mut Transcript) -> Result<OrgB> {
    let base = stack.base_url();
    transcript.secret("password of B's owner", B_OWNER.1, None);
    transcript.secret("password of B's member", B_MEMBER.1, None);
    transcript.secret("password of B's target", B_TARGET_PASSWORD, None);
    transcript.secret("password of B's credential", B_CREDENTIAL_PASSWORD, None);
    let owner = Api::login(&base, B_OWNER.0, B_OWNER.1).await?;
    transcript.login(B_OWNER.0, &owner)?;
    let member = Api::login(&base, B_MEMBER.0, B_MEMBER.1).await?;
    transcript.login(B_MEMBER.0, &member)?;
    assert_eq!(
        owner.login["org"]["name"], ORG_B,
        "B's owner logged in to the wrong organisation"
    );

    let credential = owner
        .post(
            "/api/v1/credentials",
            json!({"name": B_CREDENTIAL, "username": B_CREDENTIAL_USER, "password": B_CREDENTIAL_PASSWORD}),
        )
        .await?;
    transcript.record("B's credential", credential.to_string());
    let created = owner
        .post("/api/v1/api-keys", json!({"name": B_API_KEY, "role": "admin"}))
        .await?;
    transcript.api_key("B's owner", &created)?;
    let default_policy = owner.get("/api/v1/policy/default").await?;
    let saved = owner
        .put("/api/v1/policy", json!({"text": default_policy["text"], "version": 0}))
        .await?;
    assert_eq!(saved["version"], 1, "B's policy was not saved: {saved}");
    transcript.record("B's policy", saved.to_string());

    // A denied request adds a `denied` record to B's audit trail.
    let denied = member
        .get("/api/v1/audit")
        .await
        .expect_err("a member may not read the audit trail");
    assert_eq!(denied.status, 403, "{denied}");

    let target = owner.target_id(B_TARGET).await?;
    let session = open_failed_session(&member, &target).await?;
    transcript.record("B's member's session", session.to_string());

    let text = |value: &Value| {
        value
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("expected a string, got {value}"))
    };
    let mut org_b = OrgB {
        org: text(&owner.login["org"]["id"])?,
        owner: text(&owner.login["user"]["id"])?,
        member: text(&member.login["user"]["id"])?,
        target,
        credential: text(&credential["id"])?,
        api_key: text(&created["id"])?,
        session: text(&session["id"])?,
        markers: Vec::new(),
    };

    // B's owner can read every object the walk names, so the ids are real.
    for path in [
        format!("/api/v1/targets/{}", org_b.target),
        format!("/api/v1/credentials/{}", org_b.credential),
        format!("/api/v1/members/{}", org_b.owner),
        format!("/api/v1/members/{}", org_b.member),
        format!("/api/v1/sessions/{}", org_b.session),
        format!("/api/v1/sessions/{}/events", org_b.session),
    ] {
        let body = owner
            .get(&path)
            .await
            .with_context(|| format!("B's owner GET {path}"))?;
        transcript.record(format!("B's owner GET {path}"), body.to_string());
    }
    let keys = owner.get("/api/v1/api-keys").await?.to_string();
    transcript.record("B's owner GET /api/v1/api-keys", keys.clone());
    assert!(
        keys.contains(&org_b.api_key),
        "B's API key is missing from B's list: {keys}"
    );
    // The target logs in with a credential that `admin target-add` created.
    let target_view = owner.get(&format!("/api/v1/targets/{}", org_b.target)).await?;
    let target_credential = text(&target_view["credential_id"])?;

    let simple = |id: &str| id.replace('-', "");
    org_b.markers = vec![
        org_b.org.clone(),
        simple(&org_b.org),
        ORG_B.to_owned(),
        org_b.owner.clone(),
        org_b.member.clone(),
        B_OWNER.0.to_owned(),
        B_MEMBER.0.to_owned(),
        org_b.target.clone(),
        B_TARGET.to_owned(),
        B_TARGET_USER.to_owned(),
        org_b.credential.clone(),
        target_credential,
        B_CREDENTIAL.to_owned(),
        B_CREDENTIAL_USER.to_owned(),
        org_b.api_key.clone(),
        simple(&org_b.api_key),
        B_API_KEY.to_owned(),
        org_b.session.clone(),
    ];
    Ok(org_b)
}

/// Opens a session on a target at the closed port and waits until it has failed.
async fn open_failed_session(api: &Api, target: &str) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let session = loop {
        match api.create_session(target).await {
            Ok(session) => break session,
            // The control plane picks only workers whose heartbeat it has seen.
            Err(failure) if failure.status == 503 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(failure) => return Err(failure.into()),
        }
    };
    let id = session["id"].as_str().context("session without id")?;
    api.wait_for_state(id, "failed", Duration::from_secs(30)).await
}

/// Sends every case as every principal, each principal in its own task, and returns the
/// exchanges in table order.
async fn walk_ids(
    http: &reqwest::Client,
    base: &str,
    principals: &[Principal],
    cases: &Arc<Vec<Case>>,
    org_b: &OrgB,
    own_target: &str,
) -> Result<Vec<Exchange>> {
    let foreign_ids: Arc<Vec<String>> = Arc::new(cases.iter().map(|case| org_b.id(case.foreign).to_owned()).collect());
    let mut tasks = Vec::new();
    for principal in principals {
        let (http, base, principal) = (http.clone(), base.to_owned(), principal.clone());
        let (cases, foreign_ids, own_target) = (cases.clone(), foreign_ids.clone(), own_target.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut exchanges = Vec::new();
            for (case, foreign_id) in cases.iter().zip(foreign_ids.iter()) {
                if case.anonymous && principal.login.is_none() {
                    continue;
                }
                let random_id = uuid::Uuid::new_v4().to_string();
                let foreign = send_case(&http, &base, &principal, case, foreign_id, &own_target).await?;
                let random = send_case(&http, &base, &principal, case, &random_id, &own_target).await?;
                exchanges.push(Exchange {
                    principal: principal.label,
                    request: format!("{} {} ({:?})", case.method, case.path, case.foreign),
                    foreign,
                    random,
                });
            }
            anyhow::Ok(exchanges)
        }));
    }
    let mut exchanges = Vec::new();
    for task in tasks {
        exchanges.extend(task.await??);
    }
    Ok(exchanges)
}

async fn send_case(
    http: &reqwest::Client,
    base: &str,
    principal: &Principal,
    case: &Case,
    id: &str,
    own_target: &str,
) -> Result<(u16, String)> {
    let (user, password) = principal.login.unwrap_or_default();
    let values = [
        ("{id}", id),
        ("{own_target}", own_target),
        ("{user}", user),
        ("{password}", password),
    ];
    let path = fill(case.path, &values);
    let body = match &case.body {
        Some(template) => Some(serde_json::from_str(&fill(&template.to_string(), &values))?),
        None => None,
    };
    let token = (!case.anonymous).then_some(principal.token.as_str());
    send(http, base, token, case.method, &path, body.as_ref()).await
}

fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(template.to_owned(), |text, (placeholder, value)| {
        text.replace(placeholder, value)
    })
}

/// Sends one request and returns the status and the body text.
async fn send(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String)> {
    let mut request = http.request(method.parse()?, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {path} failed"))?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// Adds a line to `problems` for each difference between the responses to B's id and to a
/// random id, and for each id or name of B in the response.
fn check_exchange(exchange: &Exchange, org_b: &OrgB, problems: &mut Vec<String>) {
    let request = format!("{} {}", exchange.principal, exchange.request);
    let (foreign_status, foreign_body) = &exchange.foreign;
    let (random_status, random_body) = &exchange.random;
    if (200..300).contains(foreign_status) {
        problems.push(format!(
            "{request}: B's id succeeded with {foreign_status}: {foreign_body}"
        ));
    } else if !matches!(foreign_status, 403 | 404) {
        problems.push(format!(
            "{request}: B's id got {foreign_status}, expected 403 or 404: {foreign_body}"
        ));
    }
    if foreign_status != random_status {
        problems.push(format!(
            "{request}: status {foreign_status} for B's id but {random_status} for a random id \
             (B's: {foreign_body}; random: {random_body})"
        ));
    }
    let (foreign_error, random_error) = (error_of(foreign_body), error_of(random_body));
    if foreign_error.0 != random_error.0 {
        problems.push(format!(
            "{request}: error code {:?} for B's id but {:?} for a random id",
            foreign_error.0, random_error.0
        ));
    }
    if foreign_error.1 != random_error.1 {
        problems.push(format!(
            "{request}: error message {:?} for B's id but {:?} for a random id",
            foreign_error.1, random_error.1
        ));
    }
    for marker in leaked_markers(foreign_body, org_b) {
        problems.push(format!(
            "{request}: response to B's id contains {marker:?}: {foreign_body}"
        ));
    }
}

/// Returns the error code and message of an error body, or empty strings when there are none.
fn error_of(body: &str) -> (String, String) {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let field = |name: &str| value["error"][name].as_str().unwrap_or_default().to_owned();
    (field("code"), field("message"))
}

fn leaked_markers<'a>(body: &str, org_b: &'a OrgB) -> Vec<&'a str> {
    org_b
        .markers
        .iter()
        .filter(|marker| body.contains(marker.as_str()))
        .map(String::as_str)
        .collect()
}

/// Reads every page of every list as every principal and adds a line to `problems` for each
/// response with B's data or an unexpected status. Returns the number of pages read.
async fn walk_lists(
    http: &reqwest::Client,
    base: &str,
    principals: &[Principal],
    org_b: &OrgB,
    transcript: &mut Transcript,
    problems: &mut Vec<String>,
) -> Result<usize> {
    let mut pages = 0;
    for principal in principals {
        for template in LIST_PATHS {
            let path = template.replace("{b_owner}", &org_b.owner);
            let mut cursor: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let page_path = match &cursor {
                    Some(cursor) => {
                        let separator = if path.contains('?') { '&' } else { '?' };
                        format!("{path}{separator}cursor={}", percent_encode(cursor))
                    }
                    None => path.clone(),
                };
                let (status, body) = send(http, base, Some(&principal.token), "GET", &page_path, None).await?;
                pages += 1;
                let request = format!("{} GET {page_path}", principal.label);
                if !matches!(status, 200 | 403) {
                    problems.push(format!("{request}: status {status}, expected 200 or 403: {body}"));
                }
                if principal.label == "owner" && status != 200 {
                    problems.push(format!(
                        "{request}: the owner got {status}, so the list was not checked"
                    ));
                }
                for marker in leaked_markers(&body, org_b) {
                    problems.push(format!("{request}: response contains B's {marker:?}: {body}"));
                }
                let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                transcript.record(request, body);
                cursor = value["next_cursor"].as_str().map(str::to_owned);
                if cursor.is_none() {
                    break;
                }
            }
            if cursor.is_some() {
                bail!("{} GET {path}: still more pages after {MAX_PAGES}", principal.label);
            }
        }
    }
    Ok(pages)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// Returns the row count and MD5 of the rows of B in each tenant table, and of B's `orgs` and
/// `users` rows, read as the database superuser (which row-level security does not filter).
fn snapshot_org(stack: &Stack, org_b: &OrgB) -> Result<BTreeMap<String, String>> {
    let digest = |table: &str, filter: &str| {
        format!(
            "SELECT '{table}', count(*) || ' rows, md5 ' || \
             md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} t WHERE {filter}"
        )
    };
    let mut queries: Vec<String> = TENANT_TABLES
        .iter()
        .map(|table| digest(table, &format!("t.org_id = '{}'", org_b.org)))
        .collect();
    queries.push(digest("orgs", &format!("t.id = '{}'", org_b.org)));
    queries.push(digest(
        "users",
        &format!("t.id IN ('{}', '{}')", org_b.owner, org_b.member),
    ));
    let output = stack.postgres.psql("rdp_proxy", &queries.join(" UNION ALL "))?;
    let mut tables = BTreeMap::new();
    for line in output.lines() {
        let (table, digest) = line
            .split_once('|')
            .with_context(|| format!("unexpected psql line {line:?}"))?;
        if digest.starts_with("0 rows") {
            bail!("B has no rows in {table}, so the walk cannot show that they stay unchanged");
        }
        tables.insert(table.to_owned(), digest.to_owned());
    }
    if tables.len() != TENANT_TABLES.len() + 2 {
        bail!("expected a digest per table, got {tables:?}");
    }
    Ok(tables)
}

/// Lists every secret found in a response body other than the one that issued it, or in the
/// services' logs.
fn find_secrets(transcript: &Transcript, logs: &str) -> Vec<String> {
    let mut found = Vec::new();
    for secret in &transcript.secrets {
        for (index, (description, body)) in transcript.bodies.iter().enumerate() {
            if secret.issued_in != Some(index) && body.contains(&secret.value) {
                found.push(format!(
                    "{} in the response to {description}: {body}",
                    secret.description
                ));
            }
        }
        for line in logs.lines().filter(|line| line.contains(&secret.value)) {
            found.push(format!("{} in a log line: {line}", secret.description));
        }
    }
    found
}
