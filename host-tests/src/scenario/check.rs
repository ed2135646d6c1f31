//! A case's expectations checked against what a host observed.

use super::format::Expect;
use super::observed::Observed;
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;

/// Checks `o` against `e`; returns one line per mismatch. `tokens` fill `{name}` in `log_absent`.
pub fn check(e: &Expect, o: &Observed, tokens: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    if o.status != e.status {
        out.push(format!("status: expected {}, got {}", e.status, o.status));
    }
    for (k, v) in &e.response_headers {
        if o.header(k) != Some(v.as_str()) {
            out.push(format!("response header {k}:\n      - {v}\n      + {}", o.header(k).unwrap_or("(absent)")));
        }
    }
    for k in &e.response_absent {
        if let Some(v) = o.header(k) {
            out.push(format!("response header {k} should be absent, is {v:?}"));
        }
    }
    for k in &e.response_once {
        let n = o.response_headers.iter().filter(|(name, _)| name == k).count();
        if n != 1 {
            out.push(format!("response header {k}: expected exactly once, found {n} times"));
        }
    }
    if !e.body.is_empty() {
        let body: Value = serde_json::from_str(&o.body).unwrap_or(Value::Null);
        for (k, v) in &e.body {
            if body.get(k) != Some(v) {
                out.push(format!(
                    "body.{k}:\n      - {v}\n      + {}",
                    body.get(k).map_or("(absent)".into(), Value::to_string)
                ));
            }
        }
    }
    for (k, v) in &e.upstream_headers {
        match &o.upstream {
            None => out.push(format!("upstream header {k}: the request was not forwarded")),
            Some(_) if o.upstream_header(k) != Some(v.as_str()) => out.push(format!(
                "upstream header {k}:\n      - {v}\n      + {}",
                o.upstream_header(k).unwrap_or("(absent)")
            )),
            Some(_) => {}
        }
    }
    for k in &e.upstream_absent {
        if let Some(v) = o.upstream_header(k) {
            out.push(format!("upstream header {k} should be absent, is {v:?}"));
        }
    }
    if let Some(re) = &e.log {
        match Regex::new(re) {
            Err(err) => out.push(format!("log regex {re:?} is invalid: {err}")),
            Ok(r) if !o.logs.iter().any(|l| r.is_match(l)) => {
                let shown: Vec<&str> = o.logs.iter().map(String::as_str).rev().take(3).collect();
                out.push(format!("log: no line matches /{re}/; last lines:\n      {}", shown.join("\n      ")))
            }
            Ok(_) => {}
        }
    }
    if let Some(re) = &e.log_absent {
        let mut re = re.clone();
        for (name, t) in tokens {
            re = re.replace(&format!("{{{name}}}"), &regex::escape(t));
        }
        match Regex::new(&re) {
            Err(err) => out.push(format!("log_absent regex is invalid: {err}")),
            Ok(r) => {
                if let Some(l) = o.logs.iter().find(|l| r.is_match(l)) {
                    out.push(format!(
                        "log: a line matches what must never appear: {}",
                        l.chars().take(200).collect::<String>()
                    ));
                }
            }
        }
    }
    for (m, want) in &e.metrics {
        let got = o.metrics.get(m).copied().unwrap_or(0);
        if got != *want {
            out.push(format!("metric {m}: expected change {want:+}, got {got:+}"));
        }
    }
    for (m, want) in &e.metric_totals {
        let got = o.totals.get(m).copied().unwrap_or(0);
        if got != *want {
            out.push(format!("metric {m}: expected total {want}, got {got}"));
        }
    }
    for (k, want) in &e.filter_state {
        let got = o.filter_state.get(k);
        if got != Some(want) {
            out.push(format!(
                "filter state wasm.{k}:\n      - {want}\n      + {}",
                got.map_or("(unset)", String::as_str)
            ));
        }
    }
    out
}
