//! Raw HTTP calls to the registry, to check status codes, bodies and content types.

/// An HTTP answer: status, content type and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The Confluent error code of an error answer.
    pub fn error_code(&self) -> i64 {
        self.json()["error_code"].as_i64().unwrap_or(-1)
    }
}

/// `method` `url` with an optional body of `content_type`, off the runtime's workers.
pub async fn call(method: &str, url: String, body: Option<(&str, String)>) -> Answer {
    let method = method.to_string();
    let content_type = body.as_ref().map(|(t, _)| t.to_string());
    let body = body.map(|(_, b)| b);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let response = match (method.as_str(), body) {
            ("GET", _) => agent.get(&url).call(),
            ("POST", Some(body)) => agent
                .post(&url)
                .header("Content-Type", content_type.unwrap_or_default())
                .send(body),
            ("PUT", Some(body)) => agent
                .put(&url)
                .header("Content-Type", content_type.unwrap_or_default())
                .send(body),
            (other, _) => panic!("no helper for {other}"),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Answer {
            status: response.status().as_u16(),
            content_type,
            body: response.body_mut().read_to_string().expect("a body"),
        }
    })
    .await
    .expect("HTTP call")
}

/// The registry's media type.
pub const SR_JSON: &str = "application/vnd.schemaregistry.v1+json";

/// A `{"schema": ...}` request body.
pub fn schema_body(schema: &str) -> String {
    serde_json::json!({ "schema": schema }).to_string()
}
