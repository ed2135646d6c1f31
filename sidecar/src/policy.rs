//! The access policy (YAML): who may request which scopes, for how long, on whose approval.
//! Validated completely at start-up; every error names the line it is about.

use regex::Regex;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Longest regex source accepted for a justification pattern.
const MAX_PATTERN_BYTES: usize = 512;
/// Policy files are small; a larger one is a mistake.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// A duration in seconds, written as an integer or `<n>s|m|h|d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub u64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_text(d, parse_duration, "a duration (use seconds or <n>s, <n>m, <n>h, <n>d)").map(Seconds)
    }
}

/// A configuration amount written as an integer or as text that `parse` reads (`30s`, `64MiB`).
pub fn number_or_text<'de, D: Deserializer<'de>>(
    d: D,
    parse: fn(&str) -> Option<u64>,
    expected: &str,
) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(n),
        Raw::Text(t) => parse(&t).ok_or_else(|| de::Error::custom(format!("`{t}` is not {expected}"))),
    }
}

/// `90`, `90s`, `15m`, `1h`, `2d` to seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (t.get(..i)?, c),
        _ => (t, 's'),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    scopes: BTreeMap<String, RawScope>,
    subjects: Vec<SubjectRule>,
    /// Groups that may revoke anything and read the audit trail.
    #[serde(default)]
    admins: Vec<String>,
    /// How long a request may wait for its decision before it expires.
    #[serde(default = "default_pending_ttl")]
    pending_ttl: Seconds,
}

fn default_pending_ttl() -> Seconds {
    Seconds(86_400)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    max_ttl: Seconds,
    max_grant: Seconds,
    #[serde(default)]
    approval: Option<RawApproval>,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    break_glass: bool,
}

/// `approval: auto` or `approval: {approvers: [group, ...], count: N}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawApproval {
    Word(String),
    Approvers(ApproversSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproversSpec {
    approvers: Vec<String>,
    count: u32,
}

/// How a request for a scope is approved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Approval {
    /// Granted as soon as it is requested (policy permitting).
    #[default]
    Auto,
    /// `count` distinct approvers from `groups`, never the requester.
    Approvers { groups: Vec<String>, count: u32 },
}

/// Which subjects may request which scopes: a subject matches when it is in any of `groups`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectRule {
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
}

/// A justification pattern. It must match the whole justification: `INC-[0-9]+` accepts
/// `INC-42`, not `see INC-42 maybe`; write `INC-[0-9]+ .*` to allow words after the ticket.
#[derive(Debug, Clone)]
pub struct Justification {
    pattern: String,
    anchored: Regex,
}

impl Justification {
    pub fn new(pattern: &str) -> Result<Justification, regex::Error> {
        // Checked on its own first, so `a)|(b` cannot escape the anchoring group.
        Regex::new(pattern)?;
        Ok(Justification { pattern: pattern.to_owned(), anchored: Regex::new(&format!("^(?:{pattern})$"))? })
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.anchored.is_match(text)
    }

    /// The pattern as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

/// One scope's rules.
#[derive(Debug, Clone)]
pub struct ScopePolicy {
    pub max_ttl_s: u64,
    pub max_grant_s: u64,
    pub approval: Approval,
    pub justification: Option<Justification>,
    pub break_glass: bool,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub scopes: BTreeMap<String, ScopePolicy>,
    pub subjects: Vec<SubjectRule>,
    pub admins: Vec<String>,
    pub pending_ttl_s: u64,
}

/// Line (1-based) of the first occurrence of `needle` in `text`, for errors about parsed values.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map_or(0, |i| i.saturating_add(1))
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(format!("policy: larger than {MAX_POLICY_BYTES} bytes"));
        }
        let raw: RawPolicy = serde_yaml::from_str(text).map_err(|e| match e.location() {
            Some(l) => format!("policy line {}: {e}", l.line()),
            None => format!("policy: {e}"),
        })?;
        let mut scopes = BTreeMap::new();
        for (name, s) in raw.scopes {
            let line = line_of(text, &name);
            let err = |what: &str| format!("policy line {line}: scope `{name}`: {what}");
            if name.is_empty() || name.contains(char::is_whitespace) || name.len() > 128 {
                return Err(err("a scope name is 1-128 characters without spaces"));
            }
            if s.max_ttl.0 == 0 || s.max_grant.0 == 0 {
                return Err(err("max_ttl and max_grant must be positive"));
            }
            if s.max_ttl.0 > s.max_grant.0 {
                return Err(err("max_ttl cannot exceed max_grant"));
            }
            let approval = match s.approval {
                None => Approval::Auto,
                Some(RawApproval::Word(w)) if w == "auto" => Approval::Auto,
                Some(RawApproval::Word(w)) => {
                    return Err(err(&format!("approval `{w}`: use `auto` or {{approvers, count}}")));
                }
                Some(RawApproval::Approvers(a)) if a.approvers.is_empty() || a.count == 0 => {
                    return Err(err("approval by approvers needs at least one group and a count >= 1"));
                }
                Some(RawApproval::Approvers(a)) => Approval::Approvers { groups: a.approvers, count: a.count },
            };
            if s.break_glass && s.justification.is_none() {
                return Err(err("a break-glass scope needs a justification pattern"));
            }
            let justification = match s.justification {
                Some(p) if p.len() > MAX_PATTERN_BYTES => return Err(err("justification pattern too long")),
                Some(p) => {
                    Some(Justification::new(&p).map_err(|e| err(&format!("justification is not a regex: {e}")))?)
                }
                None => None,
            };
            scopes.insert(
                name,
                ScopePolicy {
                    max_ttl_s: s.max_ttl.0,
                    max_grant_s: s.max_grant.0,
                    approval,
                    justification,
                    break_glass: s.break_glass,
                },
            );
        }
        for rule in &raw.subjects {
            for scope in &rule.scopes {
                if !scopes.contains_key(scope) {
                    return Err(format!(
                        "policy line {}: subjects: scope `{scope}` is not defined under `scopes`",
                        line_of(text, scope)
                    ));
                }
            }
        }
        if raw.pending_ttl.0 < 60 || raw.pending_ttl.0 > 30 * 86_400 {
            return Err(format!("policy line {}: pending_ttl: 1m to 30d", line_of(text, "pending_ttl")));
        }
        Ok(Policy { scopes, subjects: raw.subjects, admins: raw.admins, pending_ttl_s: raw.pending_ttl.0 })
    }

    /// Whether a subject in `groups` may request `scope`.
    pub fn may_request(&self, groups: &[String], scope: &str) -> bool {
        self.subjects.iter().any(|r| r.scopes.iter().any(|s| s == scope) && r.groups.iter().any(|g| groups.contains(g)))
    }

    pub fn is_admin(&self, groups: &[String]) -> bool {
        self.admins.iter().any(|a| groups.contains(a))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const GOOD: &str = r"
scopes:
  orders:read: {max_ttl: 15m, max_grant: 8h}
  orders:write:
    max_ttl: 5m
    max_grant: 1h
    approval: {approvers: [sre-leads], count: 1}
    justification: '(INC|CHG)-[0-9]+( .+)?'
subjects:
  - groups: [sre]
    scopes: [orders:read, orders:write]
admins: [secops]
";

    #[test]
    fn parses_durations_and_approvals() {
        let p = Policy::parse(GOOD).unwrap();
        let w = &p.scopes["orders:write"];
        assert_eq!((w.max_ttl_s, w.max_grant_s), (300, 3600));
        assert_eq!(w.approval, Approval::Approvers { groups: vec!["sre-leads".into()], count: 1 });
        let j = w.justification.as_ref().unwrap();
        assert!(j.is_match("INC-42 disk") && j.is_match("CHG-7"));
        assert!(!j.is_match("see INC-42") && !j.is_match("INC-42x"), "the whole justification must match");
        assert_eq!(p.scopes["orders:read"].approval, Approval::Auto);
        assert!(p.may_request(&["sre".into()], "orders:write"));
        assert!(!p.may_request(&["dev".into()], "orders:write"));
    }

    #[test]
    fn errors_name_the_line() {
        let unknown = GOOD.replace("max_grant: 8h}", "max_grant: 8h, colour: red}");
        let e = Policy::parse(&unknown).unwrap_err();
        assert!(e.contains("line 3") && e.contains("colour"), "{e}");
        let bad_regex = GOOD.replace("'(INC|CHG)-[0-9]+( .+)?'", "'(unclosed'");
        let e = Policy::parse(&bad_regex).unwrap_err();
        assert!(e.starts_with("policy line 4: scope `orders:write`") && e.contains("regex"), "{e}");
        let undefined = GOOD.replace("scopes: [orders:read, orders:write]", "scopes: [orders:read, billing:admin]");
        let e = Policy::parse(&undefined).unwrap_err();
        assert!(e.contains("line 11") && e.contains("billing:admin"), "{e}");
        let bad_duration = GOOD.replace("max_ttl: 15m", "max_ttl: 15 minutes");
        let e = Policy::parse(&bad_duration).unwrap_err();
        assert!(e.contains("line 3") && e.contains("not a duration"), "{e}");
    }

    #[test]
    fn an_unanchored_pattern_still_matches_the_whole_justification() {
        let j = Justification::new("INC-[0-9]+").unwrap();
        assert!(j.is_match("INC-4711"));
        for smuggled in ["because reasons INC-1", "INC-1\nanything", "xINC-1", "INC-1 and more"] {
            assert!(!j.is_match(smuggled), "{smuggled:?}");
        }
        let alternation = Justification::new("INC-[0-9]+|CHG-[0-9]+").unwrap();
        assert!(!alternation.is_match("CHG-1 trailing"), "anchoring covers every alternative");
        assert!(Justification::new("a)|(b").is_err(), "a pattern cannot break out of the anchors");
    }

    #[test]
    fn break_glass_needs_a_justification_and_ttl_within_grant() {
        let e = Policy::parse("scopes:\n  bg: {max_ttl: 1m, max_grant: 10m, break_glass: true}\nsubjects: []\n")
            .unwrap_err();
        assert!(e.contains("line 2") && e.contains("justification"), "{e}");
        let e = Policy::parse("scopes:\n  s: {max_ttl: 1h, max_grant: 10m}\nsubjects: []\n").unwrap_err();
        assert!(e.contains("cannot exceed"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("2d"), Some(172_800));
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("-5s"), None);
    }
}
