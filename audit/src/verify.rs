//! Checking a chain line by line, and against its published heads.

use crate::anchor::Anchor;
use crate::files::at;
use crate::line::{link_hash, Line, GENESIS};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

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
