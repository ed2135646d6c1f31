//! Checking one chain file line by line, and against its published heads.

use crate::anchor::Anchor;
use crate::line::GENESIS;
use crate::walk::{anchors_by_seq, walk_segment};
use std::path::Path;

/// The outcome of checking a chain: how many lines held, the head hash, and the first problem.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    pub lines: u64,
    pub head: String,
    pub problem: Option<String>,
}

/// Checks every line of a single-file chain (one that starts at the first event) and names the
/// first one that does not fit.
pub fn verify(path: &Path) -> Result<Report, String> {
    verify_anchored(path, &[])
}

/// `verify`, and each published head must be in the chain with its hash: a chain that ends
/// before an anchor lost its tail, one whose hash at an anchor differs was rewritten.
pub fn verify_anchored(path: &Path, anchors: &[Anchor]) -> Result<Report, String> {
    let w = walk_segment(path, 0, GENESIS, &anchors_by_seq(anchors), None, None)?;
    let report = Report { lines: w.last_seq, head: w.head, problem: w.problem };
    if report.problem.is_some() {
        return Ok(report);
    }
    Ok(Report { problem: removed_tail(report.lines, anchors), ..report })
}

/// The problem when a published head lies beyond the chain's end.
pub(crate) fn removed_tail(last: u64, anchors: &[Anchor]) -> Option<String> {
    anchors.iter().filter(|a| a.seq > last).max_by_key(|a| a.seq).map(|a| {
        format!(
            "the chain ends at event {last} but its head was published at event {} (hash {}): the tail was removed",
            a.seq, a.hash
        )
    })
}
