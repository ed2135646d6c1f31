//! Running a scenario case by case in the wasm host and, if given, the second host, and
//! reporting; or preparing every case without a host (`dry_run`).

use super::check::check;
use super::envoy_host::EnvoyHost;
use super::format::Scenario;
use super::normalize::normalize_path;
use super::observed::Observed;
#[cfg(feature = "host")]
use super::wasm_host::WasmHost;
#[cfg(feature = "host")]
use crate::plugin::Harness;
use anyhow::Result;
#[cfg(feature = "host")]
use anyhow::{bail, Context as _};
#[cfg(feature = "host")]
use regex::Regex;
use std::collections::BTreeMap;
#[cfg(feature = "host")]
use std::path::Path;

#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
    /// Requests sent to Envoy (cases that advance the virtual clock are not).
    pub envoy_requests: usize,
    pub lines: Vec<String>,
}

/// Runs every case of `s` in the wasm host and, if given, in Envoy; prints as it goes.
#[cfg(feature = "host")]
pub fn run(harness: &Harness, wasm: &Path, path: &Path, envoy: Option<&EnvoyHost>, report: &mut Report) -> Result<()> {
    let s = Scenario::load(path)?;
    let say = |line: String, report: &mut Report| {
        println!("{line}");
        report.lines.push(line);
    };
    say(format!("{}  ({})", path.display(), s.name), report);
    let host = WasmHost::start(harness, wasm, &s)?;
    if let Some(re) = &s.start_fails_with {
        let logs: Vec<String> = host.plugin.logs().into_iter().map(|l| l.message).collect();
        let regex = Regex::new(re).with_context(|| format!("start_fails_with: bad regex {re:?}"))?;
        let mut problems = Vec::new();
        if host.plugin.start_error().is_none() {
            problems.push("[harness] the plugin started".to_owned());
        }
        if !logs.iter().any(|l| regex.is_match(l)) {
            problems.push(format!("[harness] no log line matches /{re}/ in {logs:?}"));
        }
        if let Some(envoy) = envoy {
            if !envoy.log_matches(&regex) {
                problems.push(format!("[{}] no line of {} matches /{re}/", envoy.name(), envoy.log.display()));
            }
        }
        let label = "plugin refuses to start, log names the cause";
        if problems.is_empty() {
            report.passed += 1;
            say(format!("  PASS  {label}"), report);
        } else {
            report.failed += 1;
            say(format!("  FAIL  {label}\n        {}", problems.join("\n        ")), report);
        }
    } else if let Some(e) = host.plugin.start_error() {
        bail!("{}: the plugin failed to start: {e}; log: {:?}", path.display(), host.plugin.logs());
    }
    let unix_now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut serial = 0u64;
    let harness_minted = s.scenario_tokens(host.now(), &mut serial)?;
    let envoy_minted = if envoy.is_some() { s.scenario_tokens(unix_now(), &mut serial)? } else { BTreeMap::new() };
    // The last DPoP-Nonce each host answered, for proofs that use `$dpop_nonce`.
    let (mut harness_nonce, mut envoy_nonce): (Option<String>, Option<String>) = (None, None);
    // Once the virtual clock has moved, the hosts' clocks differ for the rest of the scenario.
    let mut travelled = false;
    for case in &s.cases {
        let metric_names = case.expect.metric_names();
        let mut problems = Vec::new();
        if case.advance_s > 0 {
            host.plugin.advance(case.advance_s.saturating_mul(1000));
            travelled = true;
        }
        let harness_obs = s
            .request(case, &harness_minted, host.now(), &mut serial, harness_nonce.as_deref())
            .map(|(h, tokens)| (host.run(case, h, &metric_names, s.normalize_path), tokens));
        let (harness_obs, tokens) = match harness_obs {
            Ok(o) => o,
            Err(e) => {
                report.failed += 1;
                say(format!("  FAIL  {}\n        cannot build the request: {e:#}", case.name), report);
                continue;
            }
        };
        problems.extend(check(&case.expect, &harness_obs, &tokens).into_iter().map(|p| format!("[harness] {p}")));
        if let Some(n) = harness_obs.header("dpop-nonce") {
            harness_nonce = Some(n.to_owned());
        }
        let mut envoy_status = String::new();
        match (envoy, case.proxy_only.as_deref()) {
            (Some(envoy), _) if travelled => envoy_status = format!(" | {} skipped: virtual clock", envoy.name()),
            (Some(envoy), Some(reason)) if envoy.edge => envoy_status = format!(" | edge skipped: {reason}"),
            (Some(envoy), _) => {
                let name = envoy.name();
                report.envoy_requests += 1;
                let sent = s.request(case, &envoy_minted, unix_now(), &mut serial, envoy_nonce.as_deref());
                match sent.and_then(|(h, t)| Ok((envoy.run(case.worker, h, &case.expect)?, t))) {
                    Err(e) => problems.push(format!("[{name}] request failed: {e:#}")),
                    Ok((envoy_obs, tokens)) => {
                        envoy_status = format!(" | {name} {}", envoy_obs.status);
                        if let Some(n) = envoy_obs.header("dpop-nonce") {
                            envoy_nonce = Some(n.to_owned());
                        }
                        let found = check(&case.expect, &envoy_obs, &tokens);
                        problems.extend(found.into_iter().map(|p| format!("[{name}] {p}")));
                        let (a, b) = (harness_obs.signature(&case.expect), envoy_obs.signature(&case.expect));
                        for (x, y) in a.iter().zip(b.iter()).filter(|(x, y)| x != y) {
                            let label = format!("{name}:");
                            problems.push(format!("hosts disagree:\n      harness: {x}\n      {label:<8} {y}"));
                        }
                    }
                }
            }
            (None, _) => {}
        }
        let tag = format!("[harness {}{envoy_status}]", harness_obs.status);
        if problems.is_empty() {
            report.passed += 1;
            say(format!("  PASS  {:<58} {tag}", case.name), report);
        } else {
            report.failed += 1;
            let detail: Vec<String> = problems.iter().map(|p| p.replace('\n', "\n    ")).collect();
            say(format!("  FAIL  {:<58} {tag}\n        {}", case.name, detail.join("\n        ")), report);
        }
    }
    Ok(())
}

/// Parses a scenario file's text and prepares every case as a run would (the plugin
/// configuration, the tokens and proofs, the requests, Envoy's path normalization, the checks of
/// the expectations) without a host: what the scenario parser fuzz target exercises. Returns the
/// number of prepared cases.
pub fn dry_run(text: &str) -> Result<usize> {
    let s: Scenario = serde_yaml::from_str(text)?;
    s.plugin_config()?;
    let mut serial = 0;
    let now = s.clock_start;
    let minted = s.scenario_tokens(now, &mut serial)?;
    let mut prepared = 0;
    for case in &s.cases {
        let (mut headers, tokens) = s.request(case, &minted, now, &mut serial, None)?;
        for (_, v) in headers.iter_mut().filter(|(k, _)| k == ":path") {
            *v = normalize_path(&String::from_utf8_lossy(v)).into_bytes();
        }
        let nothing = Observed {
            status: 0,
            response_headers: Vec::new(),
            body: String::new(),
            upstream: None,
            logs: Vec::new(),
            metrics: BTreeMap::new(),
            totals: BTreeMap::new(),
            filter_state: BTreeMap::new(),
        };
        check(&case.expect, &nothing, &tokens);
        prepared += 1;
    }
    Ok(prepared)
}
