//! The second host a scenario may run in: a running Envoy (or jitgate-edge under Node) with the
//! echo upstream, observed through its listener, admin stats and log files.

use super::format::Expect;
use super::observed::Observed;
use crate::abi::Pairs;
use crate::http;
use anyhow::Result;
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Runs cases against a running Envoy (listener, admin, log file) with the echo upstream.
pub struct EnvoyHost {
    pub listener: String,
    pub admin: String,
    pub log: PathBuf,
    /// Access log with lines `<request id> <status> decision=<d> reason=<r>` (envoy/e2e.yaml).
    pub access_log: Option<PathBuf>,
    /// One kept-alive connection per scenario worker.
    pub connections: std::cell::RefCell<BTreeMap<usize, http::Connection>>,
    /// The second host is jitgate-edge under Node (edge/tests/scenario-host.mjs), not Envoy.
    pub edge: bool,
}

impl EnvoyHost {
    /// What the report calls the second host.
    pub fn name(&self) -> &'static str {
        if self.edge {
            "edge"
        } else {
            "envoy"
        }
    }

    fn counters(&self) -> Result<BTreeMap<String, i64>> {
        let r = http::request(&self.admin, "GET", "/stats/prometheus", &Vec::new(), b"", Duration::from_secs(5))?;
        Ok(String::from_utf8_lossy(&r.body)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                let name = name.split('{').next()?;
                // The native module's counters carry Envoy's dynamic-module namespace.
                let name = name.strip_prefix("envoy_dynamicmodulescustom_").unwrap_or(name);
                Some((name.to_owned(), value.parse::<f64>().ok()? as i64))
            })
            .collect())
    }

    /// Filter state as the access log shows it; Envoy flushes that file about once a second.
    fn filter_state(&self, request_id: &str) -> BTreeMap<String, String> {
        let Some(path) = &self.access_log else { return BTreeMap::new() };
        for _ in 0..40 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if let Some(line) = text.lines().rev().find(|l| l.split(' ').next() == Some(request_id)) {
                return line
                    .split(' ')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (format!("jitgate_{k}"), v.to_owned()))
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        BTreeMap::new()
    }

    /// Whether some line of Envoy's log matches; the plugin starts asynchronously, so wait a while.
    pub(crate) fn log_matches(&self, re: &Regex) -> bool {
        (0..50).any(|_| {
            let text = std::fs::read(&self.log).unwrap_or_default();
            let hit = String::from_utf8_lossy(&text).lines().any(|l| re.is_match(l));
            if !hit {
                std::thread::sleep(Duration::from_millis(100));
            }
            hit
        })
    }

    /// Sends a case on the kept-alive connection of its `worker`: one connection stays on one
    /// Envoy worker, so a scenario worker meets the same VM each time (which Envoy worker that
    /// is, Envoy decides).
    pub(crate) fn run(&self, worker: usize, headers: Pairs, e: &Expect) -> Result<Observed> {
        let metric_names = e.metric_names();
        let prom = |m: &str| m.replace(['.', '-'], "_");
        let before = self.counters()?;
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let mut connections = self.connections.borrow_mut();
        let connection =
            connections.entry(worker).or_insert_with(|| http::Connection::new(&self.listener, Duration::from_secs(10)));
        let r = connection.request(&get(":method"), &get(":path"), &headers, b"")?;
        drop(connections);
        let body = String::from_utf8_lossy(&r.body).into_owned();
        // The echo upstream answers 200 with the headers it received.
        let upstream = (r.status == 200)
            .then(|| serde_json::from_str::<Value>(&body).ok())
            .flatten()
            .and_then(|v| v.get("headers").and_then(Value::as_object).cloned())
            .map(|m| m.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned())).collect());
        // Envoy writes the filter's log lines as they happen; give the file a moment.
        let mut logs = Vec::new();
        for _ in 0..20 {
            let text = std::fs::read(&self.log).unwrap_or_default();
            logs = String::from_utf8_lossy(text.get(log_start as usize..).unwrap_or_default())
                .lines()
                .map(str::to_owned)
                .collect();
            if logs.iter().any(|l| l.contains(&get("x-request-id"))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let after = self.counters()?;
        let metrics = metric_names
            .iter()
            .map(|m| {
                (m.clone(), after.get(&prom(m)).copied().unwrap_or(0) - before.get(&prom(m)).copied().unwrap_or(0))
            })
            .collect();
        let totals = metric_names.iter().map(|m| (m.clone(), after.get(&prom(m)).copied().unwrap_or(0))).collect();
        let filter_state =
            if e.filter_state.is_empty() { BTreeMap::new() } else { self.filter_state(&get("x-request-id")) };
        Ok(Observed {
            status: u32::from(r.status),
            // The echo upstream's own headers and body are not the filter's answer; a 200 the
            // filter gave itself (a metadata document) is.
            response_headers: if upstream.is_some() { Vec::new() } else { r.headers },
            body: if upstream.is_some() { String::new() } else { body },
            upstream,
            logs,
            metrics,
            totals,
            filter_state,
        })
    }
}
