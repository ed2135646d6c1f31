//! The first host of every scenario: the filter in this crate's proxy-wasm host.

use super::format::{Case, Scenario};
use super::normalize::normalize_path;
use super::observed::Observed;
use crate::abi::Pairs;
use crate::plugin::{Harness, Outcome, Plugin, PluginOptions, Request};
use anyhow::Result;
use std::path::Path;

/// Runs cases in the wasm host.
#[cfg(feature = "host")]
pub struct WasmHost {
    pub(crate) plugin: Plugin,
}

#[cfg(feature = "host")]
impl WasmHost {
    pub fn start(harness: &Harness, wasm: &Path, s: &Scenario) -> Result<WasmHost> {
        let pre = harness.load_file(wasm)?;
        let options = PluginOptions {
            plugin_config: s.plugin_config()?.into_bytes(),
            workers: s.workers,
            start_unix_ns: s.clock_start.saturating_mul(1_000_000_000),
            ..PluginOptions::default()
        };
        Ok(WasmHost { plugin: Plugin::start(&pre, &options)? })
    }

    pub fn now(&self) -> u64 {
        self.plugin.world().now_ns.get() / 1_000_000_000
    }

    pub(crate) fn run(&self, case: &Case, mut headers: Pairs, metric_names: &[String], normalize: bool) -> Observed {
        if normalize {
            for (_, v) in headers.iter_mut().filter(|(k, _)| k == ":path") {
                *v = normalize_path(&String::from_utf8_lossy(v)).into_bytes();
            }
        }
        let before: Vec<i64> = metric_names.iter().map(|m| self.plugin.metric(m).unwrap_or(0)).collect();
        let req = Request { headers, ..Request::new("GET", "/") };
        let o: Outcome = self.plugin.send(case.worker, req);
        let metrics =
            metric_names.iter().zip(before).map(|(m, b)| (m.clone(), self.plugin.metric(m).unwrap_or(0) - b)).collect();
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        let (response_headers, body) = match &o.local_response {
            Some(r) => (r.headers.iter().map(|(k, v)| (k.clone(), text(v))).collect(), text(&r.body)),
            None => (Vec::new(), String::new()),
        };
        Observed {
            status: o.status(),
            response_headers,
            body,
            upstream: o.forwarded.as_ref().map(|h| h.iter().map(|(k, v)| (k.clone(), text(v))).collect()),
            logs: o.logs.iter().map(|l| l.message.clone()).collect(),
            metrics,
            totals: metric_names.iter().map(|m| (m.clone(), self.plugin.metric(m).unwrap_or(0))).collect(),
            filter_state: o
                .filter_state
                .iter()
                .map(|(k, v)| (k.trim_start_matches("wasm.").to_owned(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
        }
    }
}
