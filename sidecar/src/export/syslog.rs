//! RFC 5424 messages over TCP (RFC 6587 octet counting) or TLS (RFC 5425 framing is the same).
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [jitgate@32473 seq="N" hash="…" prev="…"] MSG`:
//! MSGID is the event kind, MSG the event's JSON exactly as chained (no BOM: collectors that parse
//! it as JSON would choke on one; it is MSG-ANY, and UTF-8 all the same).

use super::transport::Transport;
use crate::config::export::{Syslog, SyslogTls};
use crate::files::at;
use jitgate_audit::StoredLine;
use serde::Deserialize;
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::{self, ClientConfig, ClientConnection, StreamOwned};

/// Latest timestamp accepted from an event (9999-12-31T23:59:59Z): RFC 5424 has 4-digit years.
const MAX_UNIX_S: u64 = 253_402_300_799;
const MAX_MSGID: usize = 32;

/// The members of an event the header is made of; the others stay in MSG only.
#[derive(Debug, Default, Deserialize)]
struct Head {
    #[serde(default)]
    event: Value,
    #[serde(default)]
    ts: Value,
    #[serde(default)]
    break_glass: Value,
}

/// Severity (RFC 5424 §6.2.1) by event kind: what a SOC may want to page on stands out.
fn severity(kind: &str, break_glass: bool) -> u8 {
    match kind {
        // The sidecar found and cut a torn record after a crash.
        "store.repaired" => 4,
        // Refusals, revocations, a rotated key, and break-glass access: notice.
        "access.deny" | "grant.denied" | "token.exchange_refused" | "token.revoked" | "key.rotated" => 5,
        "access.allow" if break_glass => 5,
        _ => 6,
    }
}

/// At most `max` PRINTUSASCII characters of `s` (others dropped), or the NILVALUE.
fn printable(s: &str, max: usize) -> String {
    let out: String = s.chars().filter(|c| matches!(*c as u32, 33..=126)).take(max).collect();
    if out.is_empty() {
        "-".to_owned()
    } else {
        out
    }
}

/// An SD-PARAM value (RFC 5424 §6.3.3): `"`, `\` and `]` escaped with a backslash.
pub fn escape_param(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// An RFC 3339 timestamp as RFC 5424 allows it: upper-case `T` and `Z`, at most 6 fraction
/// digits, no leap second (clamped to :59); `None` if it is not one.
pub fn rfc5424_from_rfc3339(ts: &str) -> Option<String> {
    let b = ts.as_bytes();
    if b.len() > 64 || b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = ts.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok()).flatten()
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    let (y, mo, d, h, mi, s) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = ts.get(19..)?;
    let mut frac = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        frac = after_dot.get(..digits.min(6))?;
        rest = after_dot.get(digits..)?;
    }
    let offset = match rest {
        "Z" | "z" => "Z".to_owned(),
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && o.get(3..4) == Some(":") => {
            let digits = |r: std::ops::Range<usize>| {
                o.get(r).filter(|d| d.bytes().all(|c| c.is_ascii_digit()))?.parse::<u64>().ok()
            };
            let (oh, om) = (digits(1..3)?, digits(4..6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            o.to_owned()
        }
        _ => return None,
    };
    let dot = if frac.is_empty() { "" } else { "." };
    Some(format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{:02}{dot}{frac}{offset}", s.min(59)))
}

/// Unix seconds (and microseconds) as an RFC 5424 timestamp in UTC.
pub fn rfc5424_from_unix(secs: u64, micros: u32) -> String {
    let secs = secs.min(MAX_UNIX_S);
    let (y, m, d) = jitgate_token::civil::from_days(secs / 86_400);
    let rem = secs % 86_400;
    let frac = if micros == 0 { String::new() } else { format!(".{:06}", micros.min(999_999)) };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// The event's `ts` (Unix seconds, or an RFC 3339 string) as an RFC 5424 timestamp.
fn timestamp(ts: &Value) -> Option<String> {
    match ts {
        Value::String(s) => rfc5424_from_rfc3339(s),
        Value::Number(n) => match n.as_u64() {
            Some(secs) => (secs <= MAX_UNIX_S).then(|| rfc5424_from_unix(secs, 0)),
            None => {
                let f = n.as_f64().filter(|f| f.is_finite() && *f >= 0.0 && *f <= MAX_UNIX_S as f64)?;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let (secs, micros) = (f.trunc() as u64, (f.fract() * 1e6) as u32);
                Some(rfc5424_from_unix(secs, micros))
            }
        },
        _ => None,
    }
}

/// What every message of a sink shares.
#[derive(Debug, Clone)]
pub struct Formatter {
    facility: u8,
    hostname: String,
    app_name: String,
    procid: String,
    sd_id: String,
}

impl Formatter {
    pub fn new(cfg: &Syslog, procid: u32) -> Formatter {
        Formatter {
            facility: cfg.facility,
            hostname: printable(&cfg.hostname, 255),
            app_name: printable(&cfg.app_name, 48),
            procid: procid.to_string(),
            sd_id: printable(&cfg.sd_id, 32),
        }
    }

    /// One RFC 5424 message for a chain event; `now_unix` when the event has no usable `ts`.
    pub fn message(&self, line: &StoredLine, now_unix: u64) -> String {
        let head: Head = serde_json::from_str(&line.event).unwrap_or_default();
        let kind = head.event.as_str().unwrap_or("");
        let pri = u16::from(self.facility) * 8 + u16::from(severity(kind, head.break_glass == Value::Bool(true)));
        let ts = timestamp(&head.ts).unwrap_or_else(|| rfc5424_from_unix(now_unix, 0));
        format!(
            "<{pri}>1 {ts} {} {} {} {} [{} seq=\"{}\" hash=\"{}\" prev=\"{}\"] {}",
            self.hostname,
            self.app_name,
            self.procid,
            printable(kind, MAX_MSGID),
            self.sd_id,
            line.seq,
            escape_param(&line.hash),
            escape_param(&line.prev),
            line.event
        )
    }
}

/// Octet-counting framing (RFC 6587 §3.4.1, RFC 5425 §4.3): `MSG-LEN SP SYSLOG-MSG`.
pub fn frame(out: &mut Vec<u8>, message: &str) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// The rustls client configuration for `tls`: the collector's CA only (no system roots), and
/// optionally a client certificate.
pub fn tls_config(tls: &SyslogTls) -> Result<Arc<ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&tls.ca_file).map_err(at(&tls.ca_file))? {
        roots.add(c.map_err(at(&tls.ca_file))?).map_err(at(&tls.ca_file))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate", tls.ca_file.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match &tls.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(cert).map_err(at(cert))?.collect::<Result<_, _>>().map_err(at(cert))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(at(key))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("syslog.tls client certificate: {e}"))?
        }
    };
    rustls_pki_types::ServerName::try_from(tls.server_name.clone())
        .map_err(|e| format!("syslog.tls.server_name `{}`: {e}", tls.server_name))?;
    Ok(Arc::new(config))
}

#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }
}

fn closed() -> String {
    "the collector closed the connection".to_owned()
}

/// Whether the collector is still there: reads without blocking what it may have sent (nothing,
/// normally), and finds an end of stream, a reset or a TLS alert.
fn still_open(stream: &mut Stream) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    // A talkative peer cannot keep this loop busy: a few reads, then the next check.
    for _ in 0..16 {
        match stream {
            Stream::Plain(s) => match s.read(&mut buf) {
                Ok(0) => return Err(closed()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("connection lost: {e}")),
            },
            Stream::Tls(t) => match t.conn.read_tls(&mut t.sock) {
                Ok(0) => return Err(closed()),
                Ok(_) => {
                    let state = t.conn.process_new_packets().map_err(|e| format!("TLS: {e}"))?;
                    if state.peer_has_closed() {
                        return Err("the collector ended the TLS session".to_owned());
                    }
                    while let Ok(n) = t.conn.reader().read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("connection lost: {e}")),
            },
        }
    }
    Ok(())
}

/// A syslog sink's connection, formatter and send buffer.
#[derive(Debug)]
pub struct SyslogTransport {
    cfg: Syslog,
    tls: Option<Arc<ClientConfig>>,
    format: Formatter,
    stream: Option<Stream>,
    buf: Vec<u8>,
}

impl SyslogTransport {
    pub fn new(cfg: Syslog, tls: Option<Arc<ClientConfig>>) -> SyslogTransport {
        let format = Formatter::new(&cfg, std::process::id());
        SyslogTransport { cfg, tls, format, stream: None, buf: Vec::new() }
    }

    fn connect(&self) -> Result<Stream, String> {
        let address = self.cfg.address();
        let addrs = (self.cfg.host.as_str(), self.cfg.port).to_socket_addrs().map_err(|e| format!("{address}: {e}"))?;
        let mut last = format!("{address}: no address");
        let mut socket = None;
        for addr in addrs.take(8) {
            match TcpStream::connect_timeout(&addr, self.cfg.timeout) {
                Ok(s) => {
                    socket = Some(s);
                    break;
                }
                Err(e) => last = format!("{address} ({addr}): {e}"),
            }
        }
        let socket = socket.ok_or(last)?;
        let io = |e: std::io::Error| format!("{address}: {e}");
        socket.set_write_timeout(Some(self.cfg.timeout)).map_err(io)?;
        socket.set_read_timeout(Some(self.cfg.timeout)).map_err(io)?;
        socket.set_nodelay(true).map_err(io)?;
        let (Some(config), Some(tls)) = (&self.tls, &self.cfg.tls) else { return Ok(Stream::Plain(socket)) };
        let name = rustls_pki_types::ServerName::try_from(tls.server_name.clone()).map_err(|e| e.to_string())?;
        let conn = ClientConnection::new(config.clone(), name).map_err(|e| format!("{address}: TLS: {e}"))?;
        let mut stream = StreamOwned::new(conn, socket);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|e| format!("{address}: TLS handshake: {e}"))?;
        }
        Ok(Stream::Tls(Box::new(stream)))
    }
}

fn write_all(stream: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    match stream {
        Stream::Plain(s) => s.write_all(bytes).and_then(|()| s.flush()),
        Stream::Tls(t) => t.write_all(bytes).and_then(|()| t.flush()),
    }
}

impl Transport for SyslogTransport {
    fn ack_delay(&self) -> Duration {
        self.cfg.ack_delay
    }

    fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    fn open(&mut self) -> Result<(), String> {
        self.stream = Some(self.connect()?);
        Ok(())
    }

    fn close(&mut self) {
        if let Some(Stream::Tls(t)) = self.stream.as_mut() {
            t.conn.send_close_notify();
            let _ = t.conn.complete_io(&mut t.sock);
        }
        self.stream = None;
    }

    fn check(&mut self) -> Result<(), String> {
        let Some(stream) = self.stream.as_mut() else { return Err("not connected".to_owned()) };
        stream.socket().set_nonblocking(true).map_err(|e| e.to_string())?;
        let result = still_open(stream);
        stream.socket().set_nonblocking(false).map_err(|e| e.to_string())?;
        result
    }

    fn send(&mut self, batch: &[StoredLine], now_unix: u64) -> Result<(), String> {
        let Some(stream) = self.stream.as_mut() else { return Err("not connected".to_owned()) };
        self.buf.clear();
        for line in batch {
            frame(&mut self.buf, &self.format.message(line, now_unix));
        }
        write_all(stream, &self.buf).map_err(|e| format!("{}: write: {e}", self.cfg.address()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn cfg() -> Syslog {
        Syslog {
            host: "127.0.0.1".into(),
            port: 514,
            tls: None,
            facility: 13,
            app_name: "jitgate-sidecar".into(),
            hostname: "edge-1".into(),
            sd_id: crate::config::export::DEFAULT_SD_ID.into(),
            ack_delay: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
        }
    }

    fn line(seq: u64, event: &str) -> StoredLine {
        StoredLine { seq, prev: "ab".repeat(32), hash: "cd".repeat(32), event: event.into() }
    }

    #[test]
    fn a_message_has_every_rfc5424_field() {
        let f = Formatter::new(&cfg(), 4242);
        let ev = r#"{"ts":"2026-12-01T10:00:00.123Z","event":"access.allow","path":"/a"}"#;
        assert_eq!(
            f.message(&line(7, ev), 0),
            format!(
                "<110>1 2026-12-01T10:00:00.123Z edge-1 jitgate-sidecar 4242 access.allow \
                 [jitgate@32473 seq=\"7\" hash=\"{}\" prev=\"{}\"] {ev}",
                "cd".repeat(32),
                "ab".repeat(32)
            )
        );
        // facility 13 * 8 + notice for a denial; a lifecycle event's Unix seconds.
        let deny = f.message(&line(8, r#"{"event":"access.deny","ts":1795305600}"#), 0);
        assert!(deny.starts_with("<109>1 2026-11-22T00:00:00Z edge-1 jitgate-sidecar 4242 access.deny ["), "{deny}");
        let glass = f.message(&line(9, r#"{"event":"access.allow","break_glass":true,"ts":0}"#), 0);
        assert!(glass.starts_with("<109>1 1970-01-01T00:00:00Z "), "{glass}");
        assert!(f.message(&line(9, r#"{"event":"store.repaired"}"#), 0).starts_with("<108>1 1970-01-01T00:00:00Z "));
    }

    #[test]
    fn header_fields_are_sanitized_and_bounded() {
        let f = Formatter::new(&cfg(), 1);
        // No ts: now. MSGID: printable ASCII only, at most 32; none at all: the NILVALUE.
        let m = f.message(&line(1, &format!(r#"{{"event":"gr ant.\u00e9{}"}}"#, "x".repeat(40))), 86_400);
        let fields: Vec<&str> = m.splitn(7, ' ').collect();
        assert_eq!(fields[1], "1970-01-02T00:00:00Z");
        assert_eq!(fields[5], format!("grant.{}", "x".repeat(26)));
        assert_eq!(Formatter::new(&cfg(), 1).message(&line(1, r#"{"event":7}"#), 0).split(' ').nth(5), Some("-"));
        assert_eq!(Formatter::new(&cfg(), 1).message(&line(1, "[1,2]"), 0).split(' ').nth(5), Some("-"));
    }

    #[test]
    fn sd_param_values_are_escaped() {
        assert_eq!(escape_param(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        assert_eq!(escape_param("plain=ok"), "plain=ok");
        let mut l = line(3, "{}");
        l.hash = "x\"]".into();
        assert!(Formatter::new(&cfg(), 1).message(&l, 0).contains(r#"hash="x\"\]""#));
    }

    #[test]
    fn timestamps() {
        let t = rfc5424_from_rfc3339;
        assert_eq!(t("2026-12-01T10:00:00.123Z").as_deref(), Some("2026-12-01T10:00:00.123Z"));
        assert_eq!(t("2026-12-01t10:00:00z").as_deref(), Some("2026-12-01T10:00:00Z"));
        assert_eq!(t("2026-12-01T10:00:00.123456789+02:00").as_deref(), Some("2026-12-01T10:00:00.123456+02:00"));
        assert_eq!(t("2016-12-31T23:59:60Z").as_deref(), Some("2016-12-31T23:59:59Z"));
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-12-01 10:00:00Z",
            "2026-12-01T10:00:00",
            "2026-12-01T10:00:00.Z",
            "2026-12-01T25:00:00Z",
            "2026-12-01T10:00:00+2:00",
            "yesterday",
            "+026-12-01T10:00:00Z",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
        assert_eq!(rfc5424_from_unix(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(timestamp(&serde_json::json!(1.5)).as_deref(), Some("1970-01-01T00:00:01.500000Z"));
        assert_eq!(timestamp(&serde_json::json!(u64::MAX)), None);
        assert_eq!(timestamp(&serde_json::json!(-1)), None);
    }

    #[test]
    fn octet_counting_counts_bytes() {
        let mut out = Vec::new();
        frame(&mut out, "<110>1 - - - - - - é");
        frame(&mut out, "x");
        assert_eq!(out, "21 <110>1 - - - - - - é1 x".as_bytes());
    }
}
