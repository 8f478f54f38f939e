//! HTTP client of the public API for the CLI commands: picks the bearer (API key or stored
//! login), refreshes the stored login's access token, decodes error responses, follows pages and
//! resolves names to ids.

use std::path::PathBuf;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use super::login_file::{self, StoredLogin};
use super::{ApiError, CliError, DEFAULT_SERVER, ErrorKind, PageArgs, is_uuid};

/// Page size used when the CLI walks a whole list.
const FULL_PAGE: u32 = 200;

pub(crate) struct Client {
    http: reqwest::Client,
    server: String,
    bearer: Bearer,
    /// The credentials file, read and written for a stored login.
    login_path: PathBuf,
}

enum Bearer {
    /// `RDP_PROXY_API_KEY`; sent as it is and never refreshed.
    ApiKey(String),
    /// The login in the credentials file; its tokens are refreshed and saved back.
    Login(Box<StoredLogin>),
}

impl Client {
    /// Creates a client with `RDP_PROXY_API_KEY` as the bearer when that is set, else the stored login.
    /// With an API key the server is `RDP_PROXY_SERVER`, else the stored login's, else
    /// [`DEFAULT_SERVER`].
    pub(crate) fn from_environment() -> anyhow::Result<Self> {
        let Some(key) = std::env::var("RDP_PROXY_API_KEY").ok().filter(|key| !key.is_empty()) else {
            return Self::from_stored_login();
        };
        let login_path = login_file::path()?;
        let server = match std::env::var("RDP_PROXY_SERVER")
            .ok()
            .filter(|server| !server.is_empty())
        {
            Some(server) => server,
            None => login_file::read_optional(&login_path)
                .ok()
                .flatten()
                .map_or_else(|| DEFAULT_SERVER.to_owned(), |login| login.server),
        };
        Ok(Self {
            http: reqwest::Client::new(),
            server: normalize_server(&server),
            bearer: Bearer::ApiKey(key),
            login_path,
        })
    }

    /// Creates a client with the login in the credentials file as the bearer, even when
    /// `RDP_PROXY_API_KEY` is set.
    pub(crate) fn from_stored_login() -> anyhow::Result<Self> {
        Self::from_login_file(login_file::path()?)
    }

    /// Creates a client with the login stored in the credentials file at `login_path`.
    fn from_login_file(login_path: PathBuf) -> anyhow::Result<Self> {
        let login = login_file::read(&login_path)?;
        Ok(Self {
            http: reqwest::Client::new(),
            server: login.server.clone(),
            bearer: Bearer::Login(Box::new(login)),
            login_path,
        })
    }

    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Returns the stored login this client uses, or `None` for an API key.
    pub(crate) fn stored_login(&self) -> Option<&StoredLogin> {
        match &self.bearer {
            Bearer::Login(login) => Some(login),
            Bearer::ApiKey(_) => None,
        }
    }

    /// Replaces the stored login with new tokens (after a switch of organisation) and saves it.
    pub(crate) fn store_tokens(&mut self, tokens: &Value) -> anyhow::Result<StoredLogin> {
        let _lock = login_file::lock(&self.login_path)?;
        let login = StoredLogin::from_tokens(&self.server, tokens)?;
        login_file::write(&self.login_path, &login)?;
        self.bearer = Bearer::Login(Box::new(login.clone()));
        Ok(login)
    }

    pub(crate) async fn get(&mut self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, &[], None).await
    }

    pub(crate) async fn post(&mut self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(Method::POST, path, &[], Some(&body)).await
    }

    pub(crate) async fn put(&mut self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(Method::PUT, path, &[], Some(&body)).await
    }

    pub(crate) async fn patch(&mut self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(Method::PATCH, path, &[], Some(&body)).await
    }

    pub(crate) async fn delete(&mut self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::DELETE, path, &[], None).await
    }

    /// Sends a request and returns the JSON body (`null` for an empty one). With a stored login,
    /// an access token that expires within a minute is refreshed first, and a 401
    /// `token_expired` (the server's clock may run ahead) refreshes it and retries once.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        if let Bearer::Login(login) = &self.bearer
            && login.expires_soon()
        {
            self.refresh().await?;
        }
        let first = self.send_once(method.clone(), path, query, body).await;
        match first {
            Err(error) if self.stored_login().is_some() && is_expired_token(&error) => {
                self.refresh().await?;
                self.send_once(method, path, query, body).await
            }
            other => other,
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let bearer = match &self.bearer {
            Bearer::ApiKey(key) => key.as_str(),
            Bearer::Login(login) => login.access_token.as_str(),
        };
        call(&self.http, method, &self.server, path, query, Some(bearer), body).await
    }

    /// Spends the stored refresh token for a new token pair and saves it. Holds the
    /// credentials file's lock throughout, and adopts the tokens of another process that
    /// refreshed since this one read the file instead of spending a token that is already spent.
    async fn refresh(&mut self) -> anyhow::Result<()> {
        let Bearer::Login(current) = &mut self.bearer else {
            return Ok(());
        };
        let _lock = login_file::lock(&self.login_path)?;
        let Some(stored) = login_file::read_optional(&self.login_path)? else {
            return Err(CliError::new(
                ErrorKind::Unauthenticated,
                "logged out by another command while this one ran; run `rdp-proxy login`",
            )
            .into());
        };
        if stored.refresh_token != current.refresh_token {
            **current = stored;
            return Ok(());
        }
        let tokens = call(
            &self.http,
            Method::POST,
            &self.server,
            "/api/v1/auth/refresh",
            &[],
            None,
            Some(&json!({ "refresh_token": current.refresh_token })),
        )
        .await
        .map_err(|error| {
            let ended = super::api_error(&error).is_some_and(|api| api.status == 401);
            let advice = if ended {
                "the stored login has ended; run `rdp-proxy login` again"
            } else {
                "refreshing the access token failed"
            };
            error.context(advice)
        })?;
        let refreshed = StoredLogin::from_tokens(&current.server, &tokens)?;
        login_file::write(&self.login_path, &refreshed)?;
        **current = refreshed;
        Ok(())
    }

    /// Fetches one page as the API returns it, or with `page.all` every item of every page as
    /// one JSON array. `filters` with an empty value are left out of the query.
    pub(crate) async fn list(
        &mut self,
        path: &str,
        filters: &[(&str, Option<String>)],
        page: &PageArgs,
    ) -> anyhow::Result<Value> {
        let mut query: Vec<(&str, String)> = filters
            .iter()
            .filter_map(|(name, value)| value.clone().map(|value| (*name, value)))
            .collect();
        if !page.all {
            if let Some(limit) = page.limit {
                query.push(("limit", limit.to_string()));
            }
            if let Some(cursor) = &page.cursor {
                query.push(("cursor", cursor.clone()));
            }
            return self.send(Method::GET, path, &query, None).await;
        }
        let items = self
            .all_items(path, query, page.limit.unwrap_or(FULL_PAGE), page.cursor.clone())
            .await?;
        Ok(Value::Array(items))
    }

    /// Collects every item of a list, following `next_cursor` from `cursor` to the last page.
    async fn all_items(
        &mut self,
        path: &str,
        query: Vec<(&str, String)>,
        limit: u32,
        mut cursor: Option<String>,
    ) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            let mut page_query = query.clone();
            page_query.push(("limit", limit.to_string()));
            if let Some(cursor) = &cursor {
                page_query.push(("cursor", cursor.clone()));
            }
            let mut page = self.send(Method::GET, path, &page_query, None).await?;
            match page["items"].take() {
                Value::Array(page_items) => items.extend(page_items),
                _ => anyhow::bail!("the server's response to GET {path} has no items list"),
            }
            match page["next_cursor"].as_str() {
                Some(next) if !next.is_empty() && cursor.as_deref() != Some(next) => cursor = Some(next.to_owned()),
                _ => return Ok(items),
            }
        }
    }

    /// Returns `id_or_name` when it is a UUID, else the id of the item of the list at `path`
    /// whose `name` is `id_or_name`. `what` names the kind of object in the error.
    pub(crate) async fn resolve(
        &mut self,
        path: &str,
        id_field: &str,
        id_or_name: &str,
        what: &str,
    ) -> anyhow::Result<String> {
        if is_uuid(id_or_name) {
            return Ok(id_or_name.to_owned());
        }
        let items = self.all_items(path, Vec::new(), FULL_PAGE, None).await?;
        let found = items
            .iter()
            .find(|item| item["name"] == id_or_name)
            .and_then(|item| item[id_field].as_str());
        match found {
            Some(id) => Ok(id.to_owned()),
            None => Err(CliError::new(
                ErrorKind::NotFound,
                format!("no {what} named {id_or_name:?} in this organisation; give an id or an existing name"),
            )
            .into()),
        }
    }
}

/// Strips trailing slashes so paths can be appended.
pub(crate) fn normalize_server(server: &str) -> String {
    server.trim_end_matches('/').to_owned()
}

/// Sends one request to `server` + `path` and returns the JSON body (`null` when empty), or an
/// [`ApiError`] for an error status.
pub(crate) async fn call(
    http: &reqwest::Client,
    method: Method,
    server: &str,
    path: &str,
    query: &[(&str, String)],
    bearer: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let mut request = http.request(method.clone(), format!("{server}{path}"));
    if !query.is_empty() {
        request = request.query(query);
    }
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("could not reach the control plane at {server} ({method} {path})"))?;

    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    if status.is_success() {
        return Ok(body);
    }

    let code = body["error"]["code"]
        .as_str()
        .map_or_else(|| format!("http_{}", status.as_u16()), str::to_owned);
    let message = match (body["error"]["message"].as_str(), &body) {
        (Some(message), _) => message.to_owned(),
        (None, Value::String(text)) => text.clone(),
        (None, _) => status.canonical_reason().unwrap_or("request failed").to_owned(),
    };
    Err(ApiError {
        status: status.as_u16(),
        code,
        message,
        body,
    }
    .into())
}

fn is_expired_token(error: &anyhow::Error) -> bool {
    super::api_error(error).is_some_and(|api| api.status == 401 && api.code == "token_expired")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// One request as the mock server received it.
    #[derive(Clone, Debug)]
    struct Received {
        method: String,
        path: String,
        bearer: Option<String>,
        body: Value,
    }

    type Handler = Arc<dyn Fn(&Received) -> (u16, Value) + Send + Sync>;

    /// Serves HTTP/1.1 on a loopback port, one request per connection, and responds to each
    /// with `handler`. Returns the base URL and the requests received so far.
    async fn mock_server(handler: Handler) -> (String, Arc<Mutex<Vec<Received>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    log.lock().unwrap().push(request.clone());
                    let (status, body) = handler(&request);
                    let body = if body.is_null() {
                        String::new()
                    } else {
                        body.to_string()
                    };
                    let head = format!(
                        concat!(
                            "HTTP/1.1 {} Mock\r\n",
                            "content-type: application/json\r\n",
                            "content-length: {}\r\n",
                            "connection: close\r\n\r\n"
                        ),
                        status,
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (base, received)
    }

    async fn read_request(stream: &mut TcpStream) -> Option<Received> {
        let mut data = Vec::new();
        let mut chunk = [0_u8; 4096];
        let head_end = loop {
            if let Some(end) = data.windows(4).position(|window| window == b"\r\n\r\n") {
                break end + 4;
            }
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            data.extend_from_slice(&chunk[..read]);
        };

        let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
        let mut lines = head.lines();
        let mut request_line = lines.next()?.split(' ');
        let method = request_line.next()?.to_owned();
        let path = request_line.next()?.to_owned();
        let mut length = 0;
        let mut bearer = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().ok()?,
                "authorization" => bearer = value.trim().strip_prefix("Bearer ").map(str::to_owned),
                _ => {}
            }
        }

        while data.len() < head_end + length {
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            data.extend_from_slice(&chunk[..read]);
        }
        let body = serde_json::from_slice(&data[head_end..head_end + length]).unwrap_or(Value::Null);
        Some(Received {
            method,
            path,
            bearer,
            body,
        })
    }

    fn token_response(access: &str, refresh: &str) -> Value {
        json!({
            "access_token": access,
            "expires_at": "2999-01-01T00:00:00Z",
            "refresh_token": refresh,
            "refresh_expires_at": "2999-01-01T00:00:00Z",
            "user": { "id": "00000000-0000-0000-0000-000000000001", "name": "olivia" },
            "org": { "id": "00000000-0000-0000-0000-000000000002", "name": "default", "role": "owner" },
            "orgs": []
        })
    }

    fn error_body(code: &str) -> Value {
        json!({ "error": { "code": code, "message": "rejected by the mock server" } })
    }

    /// Writes a credentials file for `server` into a new temporary directory.
    fn stored_login(server: &str, access: &str, refresh: &str, expires_at: &str) -> (tempfile::TempDir, PathBuf) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("rdp-proxy").join("credentials.json");
        let mut tokens = token_response(access, refresh);
        tokens["expires_at"] = json!(expires_at);
        login_file::write(&path, &StoredLogin::from_tokens(server, &tokens).unwrap()).unwrap();
        (directory, path)
    }

    /// Returns a handler that serves /api/v1/me only to the bearer `new-access`, with 401
    /// `rejection` otherwise,
    /// and exchanges the refresh token `rpr_first` for `new-access` and `rpr_second`.
    fn refreshing_server(rejection: &'static str) -> Handler {
        Arc::new(move |request: &Received| {
            match (
                request.method.as_str(),
                request.path.as_str(),
                request.bearer.as_deref(),
            ) {
                ("GET", "/api/v1/me", Some("new-access")) => (200, json!({ "user": { "name": "olivia" } })),
                ("GET", "/api/v1/me", _) => (401, error_body(rejection)),
                ("POST", "/api/v1/auth/refresh", None) if request.body["refresh_token"] == "rpr_first" => {
                    (200, token_response("new-access", "rpr_second"))
                }
                ("POST", "/api/v1/auth/refresh", None) => (401, error_body("token_revoked")),
                _ => (404, error_body("not_found")),
            }
        })
    }

    fn paths(received: &Mutex<Vec<Received>>) -> Vec<String> {
        received
            .lock()
            .unwrap()
            .iter()
            .map(|request| format!("{} {}", request.method, request.path))
            .collect()
    }

    #[tokio::test]
    async fn expired_token_refreshed_and_retried() {
        let (server, received) = mock_server(refreshing_server("token_expired")).await;
        let (_directory, path) = stored_login(&server, "old-access", "rpr_first", "2999-01-01T00:00:00Z");
        let mut client = Client::from_login_file(path.clone()).unwrap();

        let me = client.get("/api/v1/me").await.unwrap();

        assert_eq!(me["user"]["name"], "olivia");
        assert_eq!(
            paths(&received),
            ["GET /api/v1/me", "POST /api/v1/auth/refresh", "GET /api/v1/me"]
        );
        let saved = login_file::read(&path).unwrap();
        assert_eq!(saved.access_token, "new-access");
        assert_eq!(saved.refresh_token, "rpr_second");
    }

    #[tokio::test]
    async fn expired_token_retried_only_once() {
        let handler: Handler = Arc::new(|request: &Received| match request.path.as_str() {
            "/api/v1/auth/refresh" => (200, token_response("new-access", "rpr_second")),
            _ => (401, error_body("token_expired")),
        });
        let (server, received) = mock_server(handler).await;
        let (_directory, path) = stored_login(&server, "old-access", "rpr_first", "2999-01-01T00:00:00Z");
        let mut client = Client::from_login_file(path).unwrap();

        let error = client.get("/api/v1/me").await.unwrap_err();

        assert_eq!(api_error_code(&error), Some("token_expired"));
        assert_eq!(paths(&received).len(), 3, "{:?}", paths(&received));
    }

    #[tokio::test]
    async fn invalid_token_not_refreshed() {
        let (server, received) = mock_server(refreshing_server("token_invalid")).await;
        let (_directory, path) = stored_login(&server, "old-access", "rpr_first", "2999-01-01T00:00:00Z");
        let mut client = Client::from_login_file(path.clone()).unwrap();

        let error = client.get("/api/v1/me").await.unwrap_err();

        assert_eq!(api_error_code(&error), Some("token_invalid"));
        assert_eq!(super::super::exit_status(&error), ErrorKind::Unauthenticated as i32);
        assert_eq!(paths(&received), ["GET /api/v1/me"]);
        assert_eq!(login_file::read(&path).unwrap().refresh_token, "rpr_first");
    }

    #[tokio::test]
    async fn stale_expiry_refreshed_before_request() {
        let (server, received) = mock_server(refreshing_server("token_expired")).await;
        let (_directory, path) = stored_login(&server, "old-access", "rpr_first", "2000-01-01T00:00:00Z");
        let mut client = Client::from_login_file(path).unwrap();

        client.get("/api/v1/me").await.unwrap();

        assert_eq!(paths(&received), ["POST /api/v1/auth/refresh", "GET /api/v1/me"]);
    }

    #[tokio::test]
    async fn api_key_never_refreshed() {
        let (server, received) = mock_server(refreshing_server("token_expired")).await;
        let directory = tempfile::tempdir().unwrap();
        let mut client = Client {
            http: reqwest::Client::new(),
            server,
            bearer: Bearer::ApiKey("rpk_key".to_owned()),
            login_path: directory.path().join("credentials.json"),
        };

        let error = client.get("/api/v1/me").await.unwrap_err();

        assert_eq!(api_error_code(&error), Some("token_expired"));
        assert_eq!(paths(&received), ["GET /api/v1/me"]);
        let request = received.lock().unwrap()[0].clone();
        assert_eq!(request.bearer.as_deref(), Some("rpk_key"));
    }

    #[tokio::test]
    async fn all_pages_followed() {
        let handler: Handler = Arc::new(|request: &Received| {
            if request.path.contains("cursor=c2") {
                (200, json!({ "items": [{ "name": "c" }], "next_cursor": null }))
            } else if request.path.contains("cursor=c1") {
                (200, json!({ "items": [{ "name": "b" }], "next_cursor": "c2" }))
            } else {
                (200, json!({ "items": [{ "name": "a" }], "next_cursor": "c1" }))
            }
        });
        let (server, received) = mock_server(handler).await;
        let directory = tempfile::tempdir().unwrap();
        let mut client = Client {
            http: reqwest::Client::new(),
            server,
            bearer: Bearer::ApiKey("rpk_key".to_owned()),
            login_path: directory.path().join("credentials.json"),
        };
        let page = PageArgs {
            limit: None,
            cursor: None,
            all: true,
        };

        let all = client
            .list("/api/v1/targets", &[("label", Some("env=prod".to_owned()))], &page)
            .await
            .unwrap();

        assert_eq!(all, json!([{ "name": "a" }, { "name": "b" }, { "name": "c" }]));
        let paths = paths(&received);
        assert_eq!(paths.len(), 3);
        assert!(paths.iter().all(|path| path.contains("label=env%3Dprod")), "{paths:?}");
    }

    fn api_error_code(error: &anyhow::Error) -> Option<&str> {
        super::super::api_error(error).map(|api| api.code.as_str())
    }
}
