//! The append-only, hash-chained audit file (DESIGN §7).
//!
//! Each line is `{"seq":N,"prev":"<hex>","hash":"<hex>","event":{...}}` where
//! `hash = SHA-256(prev || "\n" || N || "\n" || event)` over the event's exact bytes. A changed line
//! breaks its own hash; a removed or reordered line breaks `seq` and the link to `prev`.

use crate::files::{at, DurableAppend};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    seq: u64,
    prev: String,
    hash: String,
    #[serde(borrow)]
    event: &'a RawValue,
}

fn link_hash(prev: &str, seq: u64, event: &str) -> String {
    let digest = Sha256::new()
        .chain_update(prev.as_bytes())
        .chain_update(b"\n")
        .chain_update(seq.to_string().as_bytes())
        .chain_update(b"\n")
        .chain_update(event.as_bytes())
        .finalize();
    jitgate_token::encoding::hex(&digest)
}

/// The audit file, open for appending. Not thread-safe by itself: the caller holds a lock.
#[derive(Debug)]
pub struct AuditLog {
    file: DurableAppend,
    seq: u64,
    head: String,
}

impl AuditLog {
    /// Opens (or creates) the file; refuses to append to a chain that does not verify.
    pub fn open(path: &Path) -> Result<AuditLog, String> {
        let (seq, head) = if path.exists() {
            let report = verify(path)?;
            if let Some(problem) = report.problem {
                return Err(format!("{}: {problem}; refusing to extend a broken chain", path.display()));
            }
            (report.lines, report.head)
        } else {
            (0, GENESIS.to_owned())
        };
        Ok(AuditLog { file: DurableAppend::open(path)?, seq, head })
    }

    /// Appends events (each a JSON object) and syncs them to disk before returning.
    pub fn append<'e>(&mut self, events: impl IntoIterator<Item = &'e serde_json::Value>) -> Result<u64, String> {
        let mut buf = Vec::new();
        let (mut seq, mut head) = (self.seq, self.head.clone());
        for event in events {
            let text = serde_json::to_string(event).map_err(|e| e.to_string())?;
            seq = seq.saturating_add(1);
            let hash = link_hash(&head, seq, &text);
            let raw = RawValue::from_string(text).map_err(|e| e.to_string())?;
            let line = Line { seq, prev: head, hash: hash.clone(), event: &raw };
            serde_json::to_writer(&mut buf, &line).map_err(|e| e.to_string())?;
            buf.push(b'\n');
            head = hash;
        }
        self.file.append(&buf)?;
        self.seq = seq;
        self.head = head;
        Ok(seq)
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// The outcome of checking a chain: how many lines held, the head hash, and the first problem.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    pub lines: u64,
    pub head: String,
    pub problem: Option<String>,
}

/// Checks every line of an audit file and names the first one that does not fit the chain.
pub fn verify(path: &Path) -> Result<Report, String> {
    let file = File::open(path).map_err(at(path))?;
    let (mut seq, mut head) = (0u64, GENESIS.to_owned());
    for (i, text) in BufReader::new(file).lines().enumerate() {
        let n = i.saturating_add(1);
        let text = text.map_err(|e| format!("{}: line {n}: {e}", path.display()))?;
        let fail = |what: String| Report { lines: seq, head: head.clone(), problem: Some(format!("line {n}: {what}")) };
        let Ok(line) = serde_json::from_str::<Line<'_>>(&text) else {
            return Ok(fail("not an audit record (changed)".to_owned()));
        };
        let expected = seq.saturating_add(1);
        if line.seq > expected {
            return Ok(fail(format!(
                "seq {} where {expected} was due: {} line(s) removed before it",
                line.seq,
                line.seq - expected
            )));
        }
        if line.seq < expected {
            return Ok(fail(format!("seq {} where {expected} was due: lines reordered or duplicated", line.seq)));
        }
        if line.prev != head {
            return Ok(fail("does not link to the line before it (removed or reordered)".to_owned()));
        }
        if link_hash(&line.prev, line.seq, line.event.get()) != line.hash {
            return Ok(fail("content does not match its hash (changed)".to_owned()));
        }
        seq = line.seq;
        head = line.hash;
    }
    Ok(Report { lines: seq, head, problem: None })
}

/// Events of the file matching `keep`, oldest first, at most `limit`.
pub fn query(
    path: &Path,
    limit: usize,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Result<Vec<serde_json::Value>, String> {
    let file = File::open(path).map_err(at(path))?;
    let mut out = Vec::new();
    for text in BufReader::new(file).lines() {
        let text = text.map_err(|e| e.to_string())?;
        let Ok(line) = serde_json::from_str::<Line<'_>>(&text) else { continue };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line.event.get()) else { continue };
        if keep(&event) {
            out.push(event);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn chain(n: u64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        let events: Vec<_> = (1..=n).map(|i| json!({"event": "grant.requested", "i": i})).collect();
        log.append(&events).unwrap();
        (dir, path)
    }

    fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<String>)) {
        let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(String::from).collect();
        f(&mut lines);
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_intact_chain_verifies_and_reopens_where_it_ended() {
        let (_d, path) = chain(5);
        let r = verify(&path).unwrap();
        assert_eq!((r.lines, r.problem), (5, None));
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(log.append(&[json!({"event": "x"})]).unwrap(), 6);
        assert_eq!(verify(&path).unwrap().problem, None);
    }

    #[test]
    fn a_changed_line_is_named() {
        let (_d, path) = chain(5);
        rewrite(&path, |l| l[2] = l[2].replace("\"i\":3", "\"i\":33"));
        assert_eq!(verify(&path).unwrap().problem.unwrap(), "line 3: content does not match its hash (changed)");
    }

    #[test]
    fn a_removed_line_is_named() {
        let (_d, path) = chain(5);
        rewrite(&path, |l| {
            l.remove(1);
        });
        let p = verify(&path).unwrap().problem.unwrap();
        assert!(p.starts_with("line 2: seq 3 where 2 was due: 1 line(s) removed"), "{p}");
        let (_d, path) = chain(5);
        rewrite(&path, |l| {
            l.pop();
        });
        // Removing the tail cannot be seen from the file alone; the head hash (reported) can.
        assert_eq!(verify(&path).unwrap().lines, 4);
    }

    #[test]
    fn reordered_lines_are_named() {
        let (_d, path) = chain(5);
        rewrite(&path, |l| l.swap(1, 2));
        let p = verify(&path).unwrap().problem.unwrap();
        assert!(p.starts_with("line 2: seq 3 where 2 was due"), "{p}");
    }

    #[test]
    fn a_broken_chain_is_not_extended() {
        let (_d, path) = chain(3);
        rewrite(&path, |l| l[0] = l[0].replace("\"i\":1", "\"i\":9"));
        assert!(AuditLog::open(&path).unwrap_err().contains("line 1"));
    }
}
