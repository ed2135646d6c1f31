//! The append-only, hash-chained audit file (docs/architecture.md §7).
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

/// Where and how often the chain head is published, so that a removed tail can be detected.
#[derive(Debug)]
pub struct Anchoring {
    pub file: DurableAppend,
    pub every: u64,
}

/// One published head: the chain had `seq` events and its last hash was `hash` at `ts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub ts: u64,
    pub seq: u64,
    pub hash: String,
}

/// The audit file, open for appending. Not thread-safe by itself: the caller holds a lock.
#[derive(Debug)]
pub struct AuditLog {
    file: DurableAppend,
    seq: u64,
    head: String,
    anchoring: Option<Anchoring>,
}

impl AuditLog {
    /// Opens (or creates) the file. A torn last line (a crash in the middle of an append) is
    /// truncated and reported; any other break refuses to extend the chain.
    pub fn open(path: &Path) -> Result<(AuditLog, Option<String>), String> {
        let torn = crate::files::recover_torn_tail(path)?;
        let (seq, head) = if path.exists() {
            let report = verify(path)?;
            if let Some(problem) = report.problem {
                return Err(format!("{}: {problem}; refusing to extend a broken chain", path.display()));
            }
            (report.lines, report.head)
        } else {
            (0, GENESIS.to_owned())
        };
        Ok((AuditLog { file: DurableAppend::open(path)?, seq, head, anchoring: None }, torn))
    }

    /// Publishes the head every `every` events to `file` (and the log).
    pub fn anchor_to(&mut self, anchoring: Anchoring) {
        self.anchoring = Some(anchoring);
    }

    /// Appends events (each one JSON object, serialized) and syncs them to disk before returning.
    pub fn append(&mut self, events: &[String], now: u64) -> Result<u64, String> {
        let mut buf = Vec::new();
        let (mut seq, mut head) = (self.seq, self.head.clone());
        let mut anchors = Vec::new();
        for text in events {
            let text = text.clone();
            seq = seq.saturating_add(1);
            let hash = link_hash(&head, seq, &text);
            let raw = RawValue::from_string(text).map_err(|e| e.to_string())?;
            let line = Line { seq, prev: head, hash: hash.clone(), event: &raw };
            serde_json::to_writer(&mut buf, &line).map_err(|e| e.to_string())?;
            buf.push(b'\n');
            if self.anchoring.as_ref().is_some_and(|a| seq % a.every == 0) {
                anchors.push(Anchor { ts: now, seq, hash: hash.clone() });
            }
            head = hash;
        }
        self.file.append(&buf)?;
        self.seq = seq;
        self.head = head;
        if let Some(a) = &mut self.anchoring {
            for anchor in anchors {
                eprintln!("jitgate-sidecar: audit head seq={} hash={}", anchor.seq, anchor.hash);
                let mut line = serde_json::to_vec(&anchor).map_err(|e| e.to_string())?;
                line.push(b'\n');
                a.file.append(&line)?;
            }
        }
        Ok(seq)
    }

    /// The head now: how many events, and the last hash.
    pub fn head(&self) -> (u64, &str) {
        (self.seq, &self.head)
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
    verify_anchored(path, &[])
}

/// Reads an anchor file (one JSON `Anchor` per line).
pub fn read_anchors(path: &Path) -> Result<Vec<Anchor>, String> {
    let text = std::fs::read_to_string(path).map_err(at(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1)))
        .collect()
}

/// `verify`, and each published head must be in the chain with its hash: a chain that ends
/// before an anchor lost its tail, one whose hash at an anchor differs was rewritten.
pub fn verify_anchored(path: &Path, anchors: &[Anchor]) -> Result<Report, String> {
    let report = walk(path, anchors)?;
    if report.problem.is_some() {
        return Ok(report);
    }
    match anchors.iter().filter(|a| a.seq > report.lines).max_by_key(|a| a.seq) {
        Some(a) => Ok(Report {
            problem: Some(format!(
                "the chain ends at event {} but its head was published at event {} (hash {}): the tail was \
                 removed",
                report.lines, a.seq, a.hash
            )),
            ..report
        }),
        None => Ok(report),
    }
}

fn walk(path: &Path, anchors: &[Anchor]) -> Result<Report, String> {
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
        if let Some(a) = anchors.iter().find(|a| a.seq == line.seq && a.hash != line.hash) {
            return Ok(fail(format!("event {} differs from its published head {} (rewritten)", a.seq, a.hash)));
        }
        seq = line.seq;
        head = line.hash;
    }
    Ok(Report { lines: seq, head, problem: None })
}

/// Events of the file matching `keep`, newest first, at most `limit`, among those before the
/// event `before` (a seq; `None` from the newest). Returns them with the seq to continue from.
/// The file is read backwards in blocks, so the newest page costs the same however long it is.
pub fn query_newest(
    path: &Path,
    before: Option<u64>,
    limit: usize,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Result<(Vec<serde_json::Value>, Option<u64>), String> {
    let mut out = Vec::new();
    let mut next = None;
    for text in ReverseLines::open(path)? {
        let text = text?;
        let Ok(line) = serde_json::from_str::<Line<'_>>(&text) else { continue };
        if before.is_some_and(|b| line.seq >= b) {
            continue;
        }
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line.event.get()) else { continue };
        if keep(&event) {
            if out.len() == limit {
                next = Some(line.seq.saturating_add(1));
                break;
            }
            out.push(event);
        }
    }
    Ok((out, next))
}

/// Lines of a file from the last to the first.
struct ReverseLines {
    file: File,
    /// Bytes of the file not read yet (from the start).
    remaining: u64,
    /// The unfinished start of the earliest block read so far.
    carry: Vec<u8>,
    ready: Vec<String>,
    path: std::path::PathBuf,
}

impl ReverseLines {
    const BLOCK: u64 = 64 * 1024;

    fn open(path: &Path) -> Result<ReverseLines, String> {
        let file = File::open(path).map_err(at(path))?;
        let remaining = file.metadata().map_err(at(path))?.len();
        Ok(ReverseLines { file, remaining, carry: Vec::new(), ready: Vec::new(), path: path.to_owned() })
    }

    fn read_block(&mut self) -> Result<(), String> {
        use std::io::{Read, Seek, SeekFrom};
        let size = self.remaining.min(Self::BLOCK);
        self.remaining -= size;
        let mut block = vec![0u8; usize::try_from(size).unwrap_or(0)];
        self.file.seek(SeekFrom::Start(self.remaining)).map_err(at(&self.path))?;
        self.file.read_exact(&mut block).map_err(at(&self.path))?;
        block.extend_from_slice(&self.carry);
        let mut parts: Vec<&[u8]> = block.split(|&b| b == b'\n').collect();
        // The first part may continue in the block before this one.
        self.carry = if self.remaining > 0 { parts.remove(0).to_vec() } else { Vec::new() };
        self.ready.extend(parts.iter().filter(|p| !p.is_empty()).map(|p| String::from_utf8_lossy(p).into_owned()));
        Ok(())
    }
}

impl Iterator for ReverseLines {
    type Item = Result<String, String>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.ready.is_empty() {
            if self.remaining == 0 {
                return (!self.carry.is_empty())
                    .then(|| Ok(String::from_utf8_lossy(&std::mem::take(&mut self.carry)).into_owned()));
            }
            if let Err(e) = self.read_block() {
                return Some(Err(e));
            }
        }
        self.ready.pop().map(Ok)
    }
}

/// Every event of the file, oldest first (tests and small files).
pub fn events(path: &Path) -> Result<Vec<serde_json::Value>, String> {
    let (mut all, _) = query_newest(path, None, usize::MAX, |_| true)?;
    all.reverse();
    Ok(all)
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
        let (mut log, _) = AuditLog::open(&path).unwrap();
        let events: Vec<_> = (1..=n).map(|i| json!({"event": "grant.requested", "i": i}).to_string()).collect();
        log.append(&events, 0).unwrap();
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
        let (mut log, _) = AuditLog::open(&path).unwrap();
        assert_eq!(log.append(&[json!({"event": "x"}).to_string()], 0).unwrap(), 6);
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
    fn a_removed_tail_is_caught_by_a_published_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let anchors_path = dir.path().join("anchors.jsonl");
        let (mut log, _) = AuditLog::open(&path).unwrap();
        log.anchor_to(Anchoring { file: DurableAppend::open(&anchors_path).unwrap(), every: 4 });
        let events: Vec<_> = (1..=10).map(|i| json!({"event": "grant.requested", "i": i}).to_string()).collect();
        log.append(&events, 7).unwrap();
        let anchors = read_anchors(&anchors_path).unwrap();
        assert_eq!(anchors.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![4, 8]);
        assert_eq!(verify_anchored(&path, &anchors).unwrap().problem, None);
        rewrite(&path, |l| l.truncate(6));
        assert_eq!(verify(&path).unwrap().problem, None, "the file alone cannot tell");
        let p = verify_anchored(&path, &anchors).unwrap().problem.unwrap();
        assert!(p.contains("ends at event 6") && p.contains("published at event 8"), "{p}");
    }

    #[test]
    fn a_torn_last_line_is_truncated_and_the_chain_goes_on() {
        let (_d, path) = chain(3);
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, br#"{"seq":4,"prev":"ab"#).unwrap();
        let (mut log, torn) = AuditLog::open(&path).unwrap();
        assert!(torn.is_some());
        assert_eq!(log.append(&[json!({"event": "x"}).to_string()], 0).unwrap(), 4);
        assert_eq!(verify(&path).unwrap().problem, None);
    }

    #[test]
    fn queries_return_the_newest_first_in_pages() {
        let (_d, path) = chain(300);
        let (page, next) = query_newest(&path, None, 100, |_| true).unwrap();
        assert_eq!((page[0]["i"].as_u64(), page[99]["i"].as_u64(), next), (Some(300), Some(201), Some(201)));
        let (page, next) = query_newest(&path, next, 250, |e| e["i"].as_u64().unwrap() % 2 == 0).unwrap();
        assert_eq!((page.len(), page[0]["i"].as_u64(), next), (100, Some(200), None));
    }

    #[test]
    fn a_broken_chain_is_not_extended() {
        let (_d, path) = chain(3);
        rewrite(&path, |l| l[0] = l[0].replace("\"i\":1", "\"i\":9"));
        assert!(AuditLog::open(&path).unwrap_err().contains("line 1"));
    }
}
