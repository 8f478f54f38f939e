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
}

impl Api {
    pub async fn login(base: &str, user: &str, password: &str) -> Result<Self> {
        let http = reqwest::Client::new();
        let body = send(
            http.post(format!("{base}/api/v1/login"))
                .json(&json!({ "username": user, "password": password })),
        )
        .await?;
        let token = body["access_token"].as_str().unwrap_or_default().to_owned();
        Ok(Self {
            base: base.to_owned(),
            http,
            token,
        })
    }

    pub fn token(&self) -> &str {
        &self.token
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
