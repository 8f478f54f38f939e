//! A small client of the public API for tests; failures keep the status and the error code.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiFailure {}

#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    token: String,
    /// The login response (tokens, user, current organisation, organisations).
    pub login: Value,
}

impl Api {
    /// Logs in to the user's first organisation.
    pub async fn login(base: &str, user: &str, password: &str) -> Result<Self> {
        Self::login_to(base, user, password, None).await
    }

    /// Logs in to organisation `org` (an id), or the user's first one.
    pub async fn login_to(base: &str, user: &str, password: &str, org: Option<&str>) -> Result<Self> {
        let http = reqwest::Client::new();
        let mut body = json!({ "username": user, "password": password });
        if let Some(org) = org {
            body["org_id"] = json!(org);
        }
        let login = send(http.post(format!("{base}/api/v1/login")).json(&body)).await?;
        Ok(Self::from_login(base, http, login))
    }

    /// Creates a client that sends `token` (an access token or an API key) as its bearer.
    pub fn with_token(base: &str, token: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::new(),
            token: token.to_owned(),
            login: Value::Null,
        }
    }

    fn from_login(base: &str, http: reqwest::Client, login: Value) -> Self {
        let token = login["access_token"].as_str().unwrap_or_default().to_owned();
        Self {
            base: base.to_owned(),
            http,
            token,
            login,
        }
    }

    /// Switches to another organisation of the same user via /api/v1/auth/switch.
    pub async fn switch(&self, org: &str) -> Result<Self, ApiFailure> {
        let login = self.post("/api/v1/auth/switch", json!({ "org_id": org })).await?;
        Ok(Self::from_login(&self.base, self.http.clone(), login))
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Id of the organisation this client works in.
    pub fn org_id(&self) -> String {
        self.login["org"]["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Sends any request; returns the status and the JSON body (`null` when there is none).
    pub async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let method: reqwest::Method = method.parse()?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value, ApiFailure> {
        send(
            self.http
                .put(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<Value, ApiFailure> {
        send(
            self.http
                .patch(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ApiFailure> {
        send(
            self.http
                .delete(format!("{}{path}", self.base))
                .bearer_auth(&self.token),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Result<Value, ApiFailure> {
        send(self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, ApiFailure> {
        send(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await
    }

    pub async fn target_id(&self, name: &str) -> Result<String> {
        let targets = self.get("/api/v1/targets").await?;
        for item in targets["items"].as_array().cloned().unwrap_or_default() {
            if item["name"] == name {
                return Ok(item["id"].as_str().unwrap_or_default().to_owned());
            }
        }
        bail!("no target named {name}")
    }

    pub async fn create_session(&self, target_id: &str) -> Result<Value, ApiFailure> {
        self.post(
            "/api/v1/sessions",
            json!({ "target_id": target_id, "width": 1280, "height": 800 }),
        )
        .await
    }

    pub async fn session(&self, id: &str) -> Result<Value, ApiFailure> {
        self.get(&format!("/api/v1/sessions/{id}")).await
    }

    pub async fn events(&self, id: &str) -> Result<Vec<Value>, ApiFailure> {
        let page = self.get(&format!("/api/v1/sessions/{id}/events")).await?;
        Ok(page["items"].as_array().cloned().unwrap_or_default())
    }

    pub async fn attach(&self, id: &str, mode: &str) -> Result<Value, ApiFailure> {
        self.post(&format!("/api/v1/sessions/{id}/attach"), json!({ "mode": mode }))
            .await
    }

    pub async fn terminate(&self, id: &str, reason: &str) -> Result<Value, ApiFailure> {
        self.post(&format!("/api/v1/sessions/{id}/terminate"), json!({ "reason": reason }))
            .await
    }

    pub async fn detach(&self, id: &str) -> Result<Value, ApiFailure> {
        self.post(&format!("/api/v1/sessions/{id}/detach"), json!({})).await
    }

    /// Polls the session until its state is `state`; fails with the last seen session.
    pub async fn wait_for_state(&self, id: &str, state: &str, limit: Duration) -> Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let session = self.session(id).await?;
            if session["state"] == state {
                return Ok(session);
            }
            if Instant::now() > deadline {
                bail!("session {id} did not reach {state} within {limit:?}; last seen: {session}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<Value, ApiFailure> {
    let response = request.send().await.map_err(|error| ApiFailure {
        status: 0,
        code: "transport".into(),
        message: error.to_string(),
    })?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(body);
    }
    Err(ApiFailure {
        status,
        code: body["error"]["code"].as_str().unwrap_or_default().to_owned(),
        message: body["error"]["message"].as_str().unwrap_or_default().to_owned(),
    })
}
