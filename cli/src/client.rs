//! Calls to the sidecar: JSON in and out, errors as the sidecar words them.

use serde_json::Value;
use std::time::Duration;

/// Largest answer read from the sidecar.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    pub fn new() -> Client {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Client { agent }
    }

    pub fn get_json(&self, url: &str, bearer: Option<&str>) -> Result<Value, String> {
        let mut req = self.agent.get(url);
        if let Some(t) = bearer {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        answer(url, req.call())
    }

    pub fn post_json(&self, url: &str, bearer: &str, body: &Value) -> Result<Value, String> {
        let req = self.agent.post(url).header("authorization", &format!("Bearer {bearer}"));
        answer(url, req.header("content-type", "application/json").send(body.to_string().as_bytes()))
    }

    pub fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Result<Value, String> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        let req = self.agent.post(url).header("content-type", "application/x-www-form-urlencoded");
        answer(url, req.send(form.finish().as_bytes()))
    }
}

/// A 2xx answer's JSON, or the sidecar's `error_description` (else its status).
fn answer(url: &str, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value, String> {
    let mut resp = r.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let text =
        resp.body_mut().with_config().limit(MAX_ANSWER_BYTES).read_to_string().map_err(|e| format!("{url}: {e}"))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let why = value
        .get("error_description")
        .or_else(|| value.get("error"))
        .and_then(Value::as_str)
        .map_or_else(|| format!("status {status}"), |d| format!("{d} ({status})"));
    Err(why)
}
