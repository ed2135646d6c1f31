//! A minimal HTTP/1.1 client over `TcpStream`: exact control of what is sent (repeated headers,
//! raw paths) for talking to Envoy, and forwarding of outbound calls to a loopback server.

use crate::abi::Pairs;
use crate::world::{CallOutcome, CallRecord};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-case names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &Pairs,
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let mut s = connect(addr, timeout)?;
    s.write_all(&encode(addr, method, path, headers, body, true))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response"))
}

fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let sock = addr.to_socket_addrs()?.next().ok_or_else(|| io::Error::other("no address"))?;
    let s = TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

fn encode(addr: &str, method: &str, path: &str, headers: &Pairs, body: &[u8], close: bool) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    let mut has_host = false;
    for (k, v) in headers {
        if k == ":authority" {
            has_host = true;
            req.extend_from_slice(b"host: ");
        } else if k.starts_with(':') || k == "content-length" || k == "connection" {
            continue;
        } else {
            req.extend_from_slice(k.as_bytes());
            req.extend_from_slice(b": ");
        }
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    if !has_host {
        req.extend_from_slice(format!("host: {addr}\r\n").as_bytes());
    }
    req.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    if close {
        req.extend_from_slice(b"connection: close\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    req
}

/// A kept-alive HTTP/1.1 connection: in Envoy one connection stays on one worker, so requests
/// sent on it meet the same VM (and its per-VM state) every time. Reconnects if the peer closed.
pub struct Connection {
    addr: String,
    timeout: Duration,
    stream: Option<TcpStream>,
}

impl Connection {
    pub fn new(addr: &str, timeout: Duration) -> Connection {
        Connection { addr: addr.to_owned(), timeout, stream: None }
    }

    pub fn request(&mut self, method: &str, path: &str, headers: &Pairs, body: &[u8]) -> io::Result<HttpResponse> {
        let req = encode(&self.addr, method, path, headers, body, false);
        let mut s = match self.stream.take() {
            Some(s) => s,
            None => connect(&self.addr, self.timeout)?,
        };
        let r = match s.write_all(&req).and_then(|()| read_one(&mut s)) {
            Ok(r) => r,
            // The server closed the idle connection: once more on a new one.
            Err(_) => {
                s = connect(&self.addr, self.timeout)?;
                s.write_all(&req)?;
                read_one(&mut s)?
            }
        };
        if !r.headers.iter().any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close")) {
            self.stream = Some(s);
        }
        Ok(r)
    }
}

/// Reads exactly one response (content-length or chunked) from a kept-alive connection.
fn read_one(s: &mut TcpStream) -> io::Result<HttpResponse> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_response(raw.get(..end + 4).ok_or_else(bad)?).ok_or_else(bad)?;
            let complete = |raw: &[u8]| -> Option<Vec<u8>> {
                let body = raw.get(end + 4..)?;
                if head.headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
                    body.windows(5).any(|w| w == b"0\r\n\r\n").then(|| dechunk(body)).flatten()
                } else {
                    let len: usize = head.header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                    body.get(..len).map(<[u8]>::to_vec)
                }
            };
            if let Some(body) = complete(&raw) {
                return Ok(HttpResponse { body, ..head });
            }
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-response"));
        }
        raw.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(raw.get(..split)?).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw.get(split + 4..)?.to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)?;
    }
    Some(HttpResponse { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(b.get(..line_end)?).ok()?.split(';').next()?.trim(), 16).ok()?;
        b = b.get(line_end + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// Forwards an outbound call to a real server, mapping failures the way Envoy reports them.
pub fn forward(addr: &str, call: &CallRecord) -> CallOutcome {
    let get = |name: &str| {
        call.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let timeout = Duration::from_millis(u64::from(call.timeout_ms.max(1)));
    match request(addr, &get(":method"), &get(":path"), &call.headers, &call.body, timeout) {
        Ok(r) => {
            let mut headers: Pairs = vec![(":status".into(), r.status.to_string().into_bytes())];
            headers.extend(r.headers.into_iter().map(|(k, v)| (k, v.into_bytes())));
            CallOutcome::Response { headers, body: r.body }
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => CallOutcome::Refused,
        Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => CallOutcome::Timeout,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => CallOutcome::Malformed,
        Err(_) => CallOutcome::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let r = parse_response(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\ncontent-length: 2\r\n\r\nhi");
        assert_eq!(
            r.as_ref().map(|r| (r.status, r.header("www-authenticate"), r.body.as_slice())),
            Some((401, Some("Bearer"), &b"hi"[..]))
        );
        let c = parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n");
        assert_eq!(c.map(|r| r.body), Some(b"abc".to_vec()));
    }
}
