//! `audit.export`: the sinks the chain's events are shipped to (RFC 5424 syslog over TCP or TLS,
//! or JSON lines on stdout). `crate::export` runs them.

use crate::policy::Seconds;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MAX_SINKS: usize = 8;
/// RFC 5612's documentation PEN; an operator with their own PEN sets `sd_id: name@<PEN>`.
pub const DEFAULT_SD_ID: &str = "jitgate@32473";

/// One entry of `audit.export`: a name and exactly one of `syslog` or `stdout`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    name: String,
    #[serde(default)]
    syslog: Option<RawSyslog>,
    #[serde(default)]
    stdout: Option<RawStdout>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSyslog {
    address: String,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default = "default_facility")]
    facility: u8,
    #[serde(default = "default_app_name")]
    app_name: String,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default = "default_sd_id")]
    sd_id: String,
    #[serde(default = "default_ack_delay")]
    ack_delay: Seconds,
    #[serde(default = "default_timeout")]
    timeout: Seconds,
}

fn default_facility() -> u8 {
    13
}
fn default_app_name() -> String {
    "jitgate-sidecar".to_owned()
}
fn default_sd_id() -> String {
    DEFAULT_SD_ID.to_owned()
}
fn default_ack_delay() -> Seconds {
    Seconds(2)
}
fn default_timeout() -> Seconds {
    Seconds(10)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: PathBuf,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStdout {}

/// A validated sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSink {
    /// `[a-z0-9_-]{1,32}`: names the sink in metrics, logs and its cursor file.
    pub name: String,
    pub kind: SinkKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    Syslog(Box<Syslog>),
    Stdout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syslog {
    /// `host` (a name, an IPv4 address or a bracketless IPv6 address) resolved at each connect.
    pub host: String,
    pub port: u16,
    pub tls: Option<SyslogTls>,
    pub facility: u8,
    pub app_name: String,
    pub hostname: String,
    /// The SD-ID of the structured-data element carrying seq, hash and prev.
    pub sd_id: String,
    /// How long a connection must stay healthy after a write for its events to count as received.
    pub ack_delay: Duration,
    /// Connect, TLS handshake and write timeout.
    pub timeout: Duration,
}

impl Syslog {
    /// `host:port` as written in the configuration (IPv6 in brackets).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTls {
    pub ca_file: PathBuf,
    pub server_name: String,
    /// A client certificate chain and its key, for collectors that authenticate senders.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// PRINTUSASCII (RFC 5424 §6): `%d33-126`.
fn printusascii(s: &str) -> bool {
    s.bytes().all(|b| (33..=126).contains(&b))
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An SD-ID of the enterprise form (`name@<digits>`, RFC 5424 §7.2.2); names without `@` are IANA's.
fn valid_sd_id(id: &str) -> bool {
    let Some((name, pen)) = id.split_once('@') else { return false };
    (1..=32).contains(&id.len())
        && !name.is_empty()
        && printusascii(name)
        && !name.bytes().any(|b| matches!(b, b'=' | b']' | b'"' | b'@'))
        && !pen.is_empty()
        && pen.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A DNS name or an IP address, as the part of `address` before the port.
fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    (1..=253).contains(&host.len())
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `host:port` or `[v6]:port`.
fn parse_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(rest) => {
            let inner = rest.strip_suffix(']')?;
            inner.parse::<std::net::Ipv6Addr>().ok()?;
            inner
        }
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    valid_host(host).then(|| (host.to_owned(), port))
}

/// The machine's name for the HOSTNAME field, or the NILVALUE when it has none usable.
fn machine_hostname() -> String {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    read("/proc/sys/kernel/hostname")
        .filter(|h| !h.is_empty())
        .or_else(|| read("/etc/hostname"))
        .filter(|h| (1..=255).contains(&h.len()) && printusascii(h))
        .unwrap_or_else(|| "-".to_owned())
}

fn compile_syslog(raw: RawSyslog, base: &Path) -> Result<Syslog, String> {
    let (host, port) = parse_address(&raw.address)
        .ok_or_else(|| format!("syslog.address `{}`: host:port (IPv6 as [addr]:port)", raw.address.escape_debug()))?;
    if raw.facility > 23 {
        return Err(format!("syslog.facility {}: 0-23 (RFC 5424 §6.2.1; 13 is log audit)", raw.facility));
    }
    if !(1..=48).contains(&raw.app_name.len()) || !printusascii(&raw.app_name) {
        return Err("syslog.app_name: 1-48 printable ASCII characters, no spaces".to_owned());
    }
    let hostname = match raw.hostname {
        Some(h) if (1..=255).contains(&h.len()) && printusascii(&h) => h,
        Some(_) => return Err("syslog.hostname: 1-255 printable ASCII characters, no spaces".to_owned()),
        None => machine_hostname(),
    };
    if !valid_sd_id(&raw.sd_id) {
        return Err(format!(
            "syslog.sd_id `{}`: name@<private enterprise number>, at most 32 characters",
            raw.sd_id.escape_debug()
        ));
    }
    if !(1..=60).contains(&raw.ack_delay.0) {
        return Err("syslog.ack_delay: 1s-60s".to_owned());
    }
    if !(1..=300).contains(&raw.timeout.0) {
        return Err("syslog.timeout: 1s-5m".to_owned());
    }
    let tls = match raw.tls {
        None => None,
        Some(t) => {
            let server_name = t.server_name.unwrap_or_else(|| host.clone());
            if !valid_host(&server_name) {
                return Err(format!(
                    "syslog.tls.server_name `{}`: a DNS name or an IP address",
                    server_name.escape_debug()
                ));
            }
            let client = match (t.cert_file, t.key_file) {
                (None, None) => None,
                (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
                _ => return Err("syslog.tls: cert_file and key_file go together".to_owned()),
            };
            Some(SyslogTls { ca_file: base.join(t.ca_file), server_name, client })
        }
    };
    Ok(Syslog {
        host,
        port,
        tls,
        facility: raw.facility,
        app_name: raw.app_name,
        hostname,
        sd_id: raw.sd_id,
        ack_delay: Duration::from_secs(raw.ack_delay.0),
        timeout: Duration::from_secs(raw.timeout.0),
    })
}

/// Validates `audit.export`; file paths are relative to `base`, the configuration's directory.
pub fn compile(raw: Vec<RawSink>, base: &Path) -> Result<Vec<ExportSink>, String> {
    if raw.len() > MAX_SINKS {
        return Err(format!("audit.export: at most {MAX_SINKS} sinks"));
    }
    let mut out: Vec<ExportSink> = Vec::with_capacity(raw.len());
    for (i, sink) in raw.into_iter().enumerate() {
        let problem = |what: String| format!("audit.export[{i}]: {what}");
        if !valid_name(&sink.name) {
            return Err(problem(format!("name `{}`: [a-z0-9_-]{{1,32}}", sink.name.escape_debug())));
        }
        if out.iter().any(|s| s.name == sink.name) {
            return Err(problem(format!("name `{}` is used twice", sink.name)));
        }
        let kind = match (sink.syslog, sink.stdout) {
            (Some(s), None) => SinkKind::Syslog(Box::new(compile_syslog(s, base).map_err(&problem)?)),
            (None, Some(RawStdout {})) => SinkKind::Stdout,
            _ => return Err(problem(format!("sink `{}`: exactly one of syslog or stdout", sink.name))),
        };
        if kind == SinkKind::Stdout && out.iter().any(|s| s.kind == SinkKind::Stdout) {
            return Err(problem("only one stdout sink".to_owned()));
        }
        out.push(ExportSink { name: sink.name, kind });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<ExportSink>, String> {
        let raw: Vec<RawSink> = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        compile(raw, Path::new("/etc/jitgate"))
    }

    fn err(yaml: &str) -> String {
        parse(yaml).unwrap_err()
    }

    #[test]
    fn a_full_syslog_sink_and_a_stdout_sink() {
        let sinks = parse(
            "- name: siem\n  syslog:\n    address: collector.example:6514\n    tls: {ca_file: ca.pem, server_name: siem.example}\n    \
             facility: 10\n    app_name: jg\n    hostname: edge-1\n    ack_delay: 5s\n    timeout: 30s\n\
             - name: shipper\n  stdout: {}\n",
        )
        .unwrap();
        let SinkKind::Syslog(s) = &sinks[0].kind else { panic!("{sinks:?}") };
        assert_eq!((s.host.as_str(), s.port, s.facility, s.app_name.as_str()), ("collector.example", 6514, 10, "jg"));
        assert_eq!((s.hostname.as_str(), s.sd_id.as_str()), ("edge-1", DEFAULT_SD_ID));
        assert_eq!((s.ack_delay, s.timeout), (Duration::from_secs(5), Duration::from_secs(30)));
        let tls = s.tls.as_ref().unwrap();
        assert_eq!(
            (tls.ca_file.as_path(), tls.server_name.as_str()),
            (Path::new("/etc/jitgate/ca.pem"), "siem.example")
        );
        assert_eq!(sinks[1], ExportSink { name: "shipper".into(), kind: SinkKind::Stdout });
    }

    #[test]
    fn defaults_and_addresses() {
        let sinks = parse("- {name: a, syslog: {address: \"[::1]:514\", tls: {ca_file: ca.pem}}}").unwrap();
        let SinkKind::Syslog(s) = &sinks[0].kind else { panic!() };
        assert_eq!((s.host.as_str(), s.port, s.facility, s.app_name.as_str()), ("::1", 514, 13, "jitgate-sidecar"));
        assert_eq!(s.address(), "[::1]:514");
        assert_eq!(s.tls.as_ref().unwrap().server_name, "::1");
        assert_eq!((s.ack_delay, s.timeout), (Duration::from_secs(2), Duration::from_secs(10)));
        assert!(!s.hostname.is_empty() && !s.hostname.contains(' '));
        assert!(parse("[]").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("- {name: a, syslog: {address: x:1, port: 2}}", "unknown field `port`"),
            ("- {name: a, kafka: {}}", "unknown field `kafka`"),
            ("- {name: a, stdout: {pretty: true}}", "unknown field `pretty`"),
            ("- {name: a}", "audit.export[0]: sink `a`: exactly one of syslog or stdout"),
            ("- {name: a, stdout: {}, syslog: {address: x:1}}", "exactly one of syslog or stdout"),
            ("- {name: A, stdout: {}}", "audit.export[0]: name `A`"),
            ("- {name: a, stdout: {}}\n- {name: a, syslog: {address: x:1}}", "audit.export[1]: name `a` is used twice"),
            ("- {name: a, stdout: {}}\n- {name: b, stdout: {}}", "only one stdout sink"),
            ("- {name: a, syslog: {address: collector}}", "syslog.address `collector`"),
            ("- {name: a, syslog: {address: \"collector:0\"}}", "syslog.address"),
            ("- {name: a, syslog: {address: \"::1:514\"}}", "syslog.address"),
            ("- {name: a, syslog: {address: \"bad host:514\"}}", "syslog.address"),
            ("- {name: a, syslog: {address: x:1, facility: 24}}", "syslog.facility 24: 0-23"),
            ("- {name: a, syslog: {address: x:1, facility: 300}}", "facility"),
            ("- {name: a, syslog: {address: x:1, app_name: \"a b\"}}", "syslog.app_name"),
            ("- {name: a, syslog: {address: x:1, hostname: \"\"}}", "syslog.hostname"),
            ("- {name: a, syslog: {address: x:1, sd_id: jitgate}}", "syslog.sd_id `jitgate`"),
            ("- {name: a, syslog: {address: x:1, sd_id: \"a b@1\"}}", "syslog.sd_id"),
            ("- {name: a, syslog: {address: x:1, ack_delay: 0}}", "syslog.ack_delay: 1s-60s"),
            ("- {name: a, syslog: {address: x:1, timeout: 1h}}", "syslog.timeout: 1s-5m"),
            ("- {name: a, syslog: {address: x:1, tls: {}}}", "missing field `ca_file`"),
            (
                "- {name: a, syslog: {address: x:1, tls: {ca_file: c, cert_file: c}}}",
                "cert_file and key_file go together",
            ),
            ("- {name: a, syslog: {address: x:1, tls: {ca_file: c, server_name: \"a b\"}}}", "syslog.tls.server_name"),
        ];
        for (yaml, want) in cases {
            let e = err(yaml);
            assert!(e.contains(want), "{yaml}: {e}");
        }
        let nine: String = (0..9).map(|i| format!("- {{name: s{i}, syslog: {{address: x:1}}}}\n")).collect();
        assert!(err(&nine).contains("at most 8 sinks"));
        assert!(valid_sd_id("origin@32473.1") && !valid_sd_id("x@") && !valid_sd_id("x@1a"));
    }
}
