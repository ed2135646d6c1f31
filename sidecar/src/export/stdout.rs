//! The stdout sink: each chain line as one JSON line, for a log shipper reading the sidecar's
//! output. A flushed write is acknowledged at once: past the pipe, the shipper is responsible.

use super::transport::Transport;
use jitgate_audit::StoredLine;
use std::io::Write;
use std::time::Duration;

/// Writes to the process's stdout, or (tests) to any writer.
pub struct StdoutTransport {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for StdoutTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StdoutTransport")
    }
}

impl StdoutTransport {
    pub fn new(out: Box<dyn Write + Send>) -> StdoutTransport {
        StdoutTransport { out, buf: Vec::new() }
    }
}

/// `{"seq":N,"prev":"…","hash":"…","event":{…}}`: the chain line as stored (the event's bytes
/// untouched, so its hash can be checked from the output).
pub fn json_line(out: &mut Vec<u8>, line: &StoredLine) {
    let text = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    out.extend_from_slice(
        format!("{{\"seq\":{},\"prev\":{},\"hash\":{},\"event\":", line.seq, text(&line.prev), text(&line.hash))
            .as_bytes(),
    );
    out.extend_from_slice(line.event.as_bytes());
    out.extend_from_slice(b"}\n");
}

impl Transport for StdoutTransport {
    fn ack_delay(&self) -> Duration {
        Duration::ZERO
    }

    fn is_open(&self) -> bool {
        true
    }

    fn open(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn close(&mut self) {}

    fn check(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn send(&mut self, batch: &[StoredLine], _now_unix: u64) -> Result<(), String> {
        self.buf.clear();
        for line in batch {
            json_line(&mut self.buf, line);
        }
        self.out.write_all(&self.buf).and_then(|()| self.out.flush()).map_err(|e| format!("stdout: {e}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_line_is_the_chain_line() {
        let mut out = Vec::new();
        let l = StoredLine { seq: 3, prev: "aa".into(), hash: "bb".into(), event: r#"{"event":"x","n":1.50}"#.into() };
        json_line(&mut out, &l);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"seq\":3,\"prev\":\"aa\",\"hash\":\"bb\",\"event\":{\"event\":\"x\",\"n\":1.50}}\n"
        );
    }
}
