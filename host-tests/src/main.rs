//! jitgate-harness CLI: run scenario files, render one for Envoy, or try one request.

use anyhow::{anyhow, bail, Context as _, Result};
use jitgate_harness::scenario::{self, EnvoyHost, Report, Scenario};
use jitgate_harness::{Harness, Plugin, PluginOptions, Request};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:
  jitgate-harness run SCENARIO.yaml... --wasm FILE [--envoy HOST:PORT --envoy-admin HOST:PORT --envoy-log FILE [--envoy-access-log FILE] [--second-host envoy|edge]]
  jitgate-harness render SCENARIO.yaml          (plugin config and workers, as JSON, for starting Envoy)
  jitgate-harness request --wasm FILE --config FILE [-H 'name: value']... [--worker N] METHOD PATH";

struct Args {
    positional: Vec<String>,
    flags: Vec<(String, String)>,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args { positional: Vec::new(), flags: Vec::new() };
    let mut it = args.iter();
    while let Some(x) = it.next() {
        if x.starts_with('-') && x.len() > 1 {
            let v = it.next().ok_or_else(|| anyhow!("{x} needs a value"))?;
            a.flags.push((x.clone(), v.clone()));
        } else {
            a.positional.push(x.clone());
        }
    }
    Ok(a)
}

impl Args {
    fn flag(&self, name: &str) -> Option<&str> {
        self.flags.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn need(&self, name: &str) -> Result<&str> {
        self.flag(name).ok_or_else(|| anyhow!("{name} is required\n{USAGE}"))
    }
}

fn run(args: &Args) -> Result<bool> {
    let wasm = PathBuf::from(args.need("--wasm")?);
    if args.positional.is_empty() {
        bail!("no scenario files\n{USAGE}");
    }
    let envoy = match args.flag("--envoy") {
        None => None,
        Some(l) => Some(EnvoyHost {
            listener: l.into(),
            admin: args.need("--envoy-admin")?.into(),
            log: args.need("--envoy-log")?.into(),
            access_log: args.flag("--envoy-access-log").map(Into::into),
            connections: Default::default(),
            edge: match args.flag("--second-host") {
                None | Some("envoy") => false,
                Some("edge") => true,
                Some(other) => bail!("--second-host: envoy or edge, not {other}"),
            },
        }),
    };
    let harness = Harness::new()?;
    let mut report = Report::default();
    for path in &args.positional {
        if let Err(e) = scenario::run(&harness, &wasm, path.as_ref(), envoy.as_ref(), &mut report) {
            report.failed += 1;
            println!("  FAIL  {path}: {e:#}");
        }
    }
    match envoy {
        Some(e) => println!(
            "harness+{0}: {1} passed, {2} failed ({3} requests sent to {0})",
            e.name(),
            report.passed,
            report.failed,
            report.envoy_requests
        ),
        None => println!("harness: {} passed, {} failed", report.passed, report.failed),
    }
    Ok(report.failed == 0)
}

fn render(args: &Args) -> Result<bool> {
    let path = args.positional.first().ok_or_else(|| anyhow!("render needs a scenario file"))?;
    let s = Scenario::load(path.as_ref())?;
    let out = serde_json::json!({
        "name": s.name,
        "config": s.plugin_config()?,
        "workers": s.workers,
        "start_fails": s.start_fails_with.is_some(),
    });
    println!("{out}");
    Ok(true)
}

fn request(args: &Args) -> Result<bool> {
    let [method, path] = args.positional.as_slice() else { bail!("request needs METHOD PATH\n{USAGE}") };
    let config = std::fs::read(args.need("--config")?).context("reading --config")?;
    let harness = Harness::new()?;
    let pre = harness.load_file(args.need("--wasm")?.as_ref())?;
    let plugin = Plugin::start(
        &pre,
        &PluginOptions { plugin_config: config, workers: 1, start_unix_ns: now_ns(), ..Default::default() },
    )?;
    if let Some(e) = plugin.start_error() {
        println!("plugin failed to start: {e}");
        for l in plugin.logs() {
            println!("  [{:?}] {}", l.level, l.message);
        }
        return Ok(false);
    }
    let mut req = Request::new(method, path);
    for (_, v) in args.flags.iter().filter(|(k, _)| k == "-H") {
        let (name, value) = v.split_once(':').ok_or_else(|| anyhow!("-H takes 'name: value'"))?;
        req = req.header(name.trim(), value.trim());
    }
    let worker = args.flag("--worker").map(str::parse).transpose()?.unwrap_or(0);
    let o = plugin.send(worker, req);
    let (decision, reason) = decision_of(&o);
    println!("decision: {decision} ({reason})");
    match (&o.local_response, &o.forwarded) {
        (Some(r), _) => {
            println!("response: {} (local)", r.status);
            for (k, v) in &r.headers {
                println!("  {k}: {}", String::from_utf8_lossy(v));
            }
            println!("  {}", String::from_utf8_lossy(&r.body));
        }
        (None, Some(h)) => {
            println!("forwarded upstream with:");
            for (k, v) in h {
                println!("  {k}: {}", String::from_utf8_lossy(v));
            }
        }
        (None, None) => println!("stalled: the filter paused and never resumed"),
    }
    for l in &o.logs {
        println!("log [{:?}] {}", l.level, l.message);
    }
    if let Some(t) = &o.trap {
        println!("trap: {t}");
    }
    Ok(true)
}

/// The decision from filter state (`filter_state: true`), else from the filter's audit line.
fn decision_of(o: &jitgate_harness::plugin::Outcome) -> (String, String) {
    let state = |k: &str| o.filter_state.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
    if let (Some(d), Some(r)) = (state("wasm.jitgate_decision"), state("wasm.jitgate_reason")) {
        return (d, r);
    }
    let audit = o.logs.iter().rev().find_map(|l| l.message.strip_prefix("jitgate.audit "));
    let event: serde_json::Value = audit.and_then(|a| serde_json::from_str(a).ok()).unwrap_or_default();
    let field = |k: &str| event.get(k).and_then(serde_json::Value::as_str);
    let decision = match field("event") {
        Some("access.allow") => "allow",
        Some("access.deny") => "deny",
        _ => "unknown",
    };
    (decision.to_owned(), field("reason").unwrap_or("-").to_owned())
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = parse(argv.get(1..).unwrap_or_default()).and_then(|a| match argv.first().map(String::as_str) {
        Some("run") => run(&a),
        Some("render") => render(&a),
        Some("request") => request(&a),
        _ => Err(anyhow!("{USAGE}")),
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("jitgate-harness: {e:#}");
            ExitCode::from(2)
        }
    }
}
