//! The console's pages (maud: every value printed is escaped). No inline script or style.

use super::utc;
use crate::app::App;
use crate::blocking::lock;
use crate::grants;
use crate::identity::Subject;
use crate::policy::Approval;
use crate::store::{Grant, GrantStatus};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

fn layout(title: &str, who: Option<(&Subject, &str)>, app: Option<&App>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · jitgate" }
                link rel="stylesheet" href="/ui/static/console.css";
                script src="/ui/static/console.js" defer {}
            }
            body {
                header {
                    strong { "jitgate" }
                    @if let Some((w, csrf)) = who {
                        nav {
                            a href="/ui/" { "My access" }
                            a href="/ui/queue" { "Approvals" }
                            @if app.is_some_and(|a| a.config.policy.is_admin(&w.groups)) { a href="/ui/admin" { "Admin" } }
                        }
                        form.inline method="post" action="/ui/logout" {
                            span #whoami { (w.sub) " (" (w.groups.join(", ")) ")" }
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn when(app: &App, t: Option<u64>) -> String {
    t.map_or_else(
        || "—".to_owned(),
        |t| {
            let ago = app.clock.now().saturating_sub(t);
            if ago < 120 {
                format!("{ago} s ago")
            } else if ago < 7200 {
                format!("{} min ago", ago / 60)
            } else {
                format!("{} h ago", ago / 3600)
            }
        },
    )
}

fn status(g: &Grant, now: u64) -> &'static str {
    match g.status {
        GrantStatus::Pending => "pending",
        GrantStatus::Denied => "denied",
        GrantStatus::Approved if g.is_active(now) => "active",
        GrantStatus::Approved | GrantStatus::Expired => "expired",
    }
}

fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// The requester's page: the request form, their requests, their active grants.
pub fn home(app: &App, who: &Subject, csrf: &str, error: Option<(&str, &HashMap<String, String>)>) -> Markup {
    let policy = &app.config.policy;
    let now = app.clock.now();
    let typed = |k: &str| error.and_then(|(_, f)| f.get(k)).cloned().unwrap_or_default();
    let store = app.store().ok();
    let mut mine: Vec<Grant> = store
        .as_ref()
        .map(|s| s.state.grants.values().filter(|g| who.is(&g.owner())).cloned().collect())
        .unwrap_or_default();
    drop(store);
    mine.sort_by_key(|g| std::cmp::Reverse(g.created_at));
    let scopes: Vec<(&String, &crate::policy::ScopePolicy)> =
        policy.scopes.iter().filter(|(s, _)| policy.may_request(&who.groups, s)).collect();
    layout(
        "My access",
        Some((who, csrf)),
        Some(app),
        html! {
            section {
                h2 { "Ask for access" }
                @if let Some((e, _)) = error { p.error role="alert" #form-error { (e) } }
                form #request-form method="post" action="/ui/requests" {
                    (csrf_field(csrf))
                    label { "Scope " select name="scope" #scope {
                        @for (name, p) in &scopes {
                            option value=(name) data-pattern=[p.justification.as_ref().map(|j| j.as_str())]
                                data-max=(p.max_grant_s) data-break-glass=[p.break_glass.then_some("true")]
                                selected[typed("scope") == **name] {
                                (name) @if p.break_glass { " (break-glass)" } " — up to " (p.max_grant_s / 60) " min"
                                @match &p.approval { Approval::Auto => { ", automatic" } Approval::Approvers { groups, count } => { ", " (count) " approval(s) by " (groups.join("/")) } }
                            }
                        }
                    } }
                    label { "For " input name="duration" #duration value=(if typed("duration").is_empty() { "30m".to_owned() } else { typed("duration") }) size="6"; }
                    label { "Justification " input name="justification" #justification value=(typed("justification")) size="40"; }
                    p.hint #justification-hint aria-live="polite" {}
                    p.warning #break-glass-warning hidden {
                        "Break-glass: granted at once, flagged in every token and in the audit trail, and reviewed afterwards."
                    }
                    button type="submit" #ask { "Ask" }
                }
            }
            section {
                h2 { "My requests" }
                table #my-requests {
                    thead { tr { th { "Request" } th { "Scopes" } th { "State" } th { "Asked" } th { "Ends" } th {} } }
                    tbody {
                        @for g in &mine {
                            tr data-id=(g.id) {
                                td { code { (g.id) } }
                                td { (g.scopes.join(" ")) @if g.break_glass { " " span.badge { "break-glass" } } }
                                td.state { (status(g, now)) }
                                td { (when(app, Some(g.created_at))) }
                                td { @if let (Some(e), true) = (g.expires_at, g.is_active(now)) { span.countdown data-expires=(e) { (e.saturating_sub(now) / 60) " min" } } }
                                td {
                                    @if g.is_active(now) {
                                        form.inline method="post" action="/ui/token" {
                                            (csrf_field(csrf))
                                            input type="hidden" name="scope" value=(g.scopes.join(" "));
                                            button type="submit" .get-token { "Get a token" }
                                        }
                                    }
                                    @if g.is_active(now) || g.status == GrantStatus::Pending {
                                        form.inline method="post" action="/ui/revoke" {
                                            (csrf_field(csrf))
                                            input type="hidden" name="kind" value="grant";
                                            input type="hidden" name="value" value=(g.id);
                                            button type="submit" .revoke { @if g.status == GrantStatus::Pending { "Cancel" } @else { "Revoke" } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The approver's queue: pending requests they may decide (never their own), and recent decisions.
pub fn queue(app: &App, who: &Subject, csrf: &str) -> Markup {
    let now = app.clock.now();
    let store = app.store().ok();
    let all: Vec<Grant> = store.as_ref().map(|s| s.state.grants.values().cloned().collect()).unwrap_or_default();
    drop(store);
    let mut pending: Vec<&Grant> = all
        .iter()
        .filter(|g| g.status == GrantStatus::Pending && !who.is(&g.owner()) && !g.approvers.iter().any(|x| who.is(x)))
        .filter(|g| grants::may_approve(app, who, g))
        .collect();
    pending.sort_by_key(|g| g.created_at);
    let mut decided: Vec<&Grant> = all
        .iter()
        .filter(|g| g.approvers.iter().any(|x| who.is(x)) || g.denied_by.as_ref().is_some_and(|d| who.is(d)))
        .collect();
    decided.sort_by_key(|g| std::cmp::Reverse(g.decided_at));
    decided.truncate(20);
    layout(
        "Approvals",
        Some((who, csrf)),
        Some(app),
        html! {
            section {
                h2 { "Waiting for you" }
                @if pending.is_empty() { p #queue-empty { "Nothing waits for your decision." } }
                @for g in &pending { (request_card(app, g, Some(csrf))) }
            }
            section {
                h2 { "Recently decided by you" }
                ul #decided { @for g in &decided { li { code { (g.id) } " " (g.sub) " " (g.scopes.join(" ")) ": " (status(g, now)) } } }
            }
        },
    )
}

/// One request: who asks for what, why, for how long, the policy that applies, and (for someone
/// who may decide it) the approve/deny form.
fn request_card(app: &App, g: &Grant, decide_with: Option<&str>) -> Markup {
    html! {
        article.request data-id=(g.id) {
            h3 { (g.sub) " asks for " (g.scopes.join(" ")) " for " (g.duration_s / 60) " min" }
            p { "Why: " q { (g.justification) } }
            p.meta { "Request " code { (g.id) } ", asked " (when(app, Some(g.created_at))) ", identity " (g.iss)
                ", approvals " (g.approvers.len()) " of " (g.required_approvals) ", " (status(g, app.clock.now())) }
            @for s in &g.scopes { @if let Some(p) = app.config.policy.scopes.get(s) {
                p.meta { "Policy for " code { (s) } ": tokens up to " (p.max_ttl_s / 60) " min, grants up to " (p.max_grant_s / 60) " min"
                    @if let Approval::Approvers { groups, count } = &p.approval { ", " (count) " approval(s) by " (groups.join("/")) } }
            } }
            @if let Some(csrf) = decide_with {
                form method="post" action={ "/ui/requests/" (g.id) "/decide" } {
                    (csrf_field(csrf))
                    label { "Comment " input name="comment" size="40"; }
                    button type="submit" name="decision" value="approve" .approve { "Approve" }
                    button type="submit" name="decision" value="deny" .deny { "Deny" }
                }
            }
        }
    }
}

/// One request (the page notifications link to): its owner, an admin or an approver may see it.
pub fn request(app: &App, who: &Subject, csrf: &str, g: &Grant, may_decide: bool) -> Markup {
    layout(
        "Request",
        Some((who, csrf)),
        Some(app),
        html! {
            section { (request_card(app, g, may_decide.then_some(csrf))) }
            p { a href="/ui/queue" { "All requests waiting for you" } }
        },
    )
}

/// The token page: shown once, on an explicit request, with a copy-ready curl line.
pub fn token(app: &App, who: &Subject, csrf: &str, scope: &str, token: &str, expires_in: u64) -> Markup {
    layout(
        "Your token",
        Some((who, csrf)),
        Some(app),
        html! {
            p { "A JIT token for " code { (scope) } ", valid " (expires_in / 60) " min. It is not stored here; this page is the only place it is shown." }
            pre #curl { "curl -H \"Authorization: Bearer " (token) "\" https://api.example/…" }
            textarea #token readonly rows="4" cols="80" { (token) }
            p { a href="/ui/" { "Back" } }
        },
    )
}

/// The admin page: overview SLIs, active grants with revocation, and the audit timeline.
pub fn admin(app: &App, who: &Subject, csrf: &str, q: &HashMap<String, String>) -> Markup {
    let now = app.clock.now();
    let store = app.store().ok();
    let all: Vec<Grant> = store.as_ref().map(|s| s.state.grants.values().cloned().collect()).unwrap_or_default();
    drop(store);
    let mut active: Vec<&Grant> = all.iter().filter(|g| g.is_active(now)).collect();
    active.sort_by_key(|g| g.expires_at);
    let pending = all.iter().filter(|g| g.status == GrantStatus::Pending).count();
    let mut waits: Vec<u64> = all
        .iter()
        .filter(|g| !g.approvers.is_empty())
        .filter_map(|g| Some(g.approved_at?.saturating_sub(g.created_at)))
        .collect();
    waits.sort_unstable();
    let filter = |k: &str| q.get(k).filter(|v| !v.is_empty() && v.len() <= 128).cloned();
    let (f_sub, f_grant, f_event) = (filter("sub"), filter("grant"), filter("event"));
    let (f_from, f_to) = (filter("from"), filter("to"));
    // A time that does not parse filters nothing out, and says so on the page.
    let (from, to) = (f_from.as_deref().map(utc::parse), f_to.as_deref().map(utc::parse));
    let bad_time = matches!(from, Some(None)) || matches!(to, Some(None));
    let (from, to) = (from.flatten(), to.flatten());
    let keep = |e: &Value| {
        let fields = [("sub", &f_sub), ("grant", &f_grant), ("event", &f_event)]
            .iter()
            .all(|(k, v)| v.as_ref().is_none_or(|v| e.get(*k).and_then(Value::as_str) == Some(v.as_str())));
        let ts = event_time(e);
        let in_time = from.is_none_or(|f| ts.is_some_and(|t| t >= f)) && to.is_none_or(|u| ts.is_some_and(|t| t <= u));
        fields && in_time
    };
    let (timeline, _) = app.audit_page(None, 50, keep).unwrap_or_default();
    let (recent, _) = app.audit_page(None, 5000, |_| true).unwrap_or_default();
    let mut denials: BTreeMap<String, u64> = BTreeMap::new();
    let mut break_glass = 0;
    for e in &recent {
        match e.get("event").and_then(Value::as_str) {
            Some("access.deny") => {
                *denials.entry(e.get("reason").and_then(Value::as_str).unwrap_or("?").to_owned()).or_default() += 1
            }
            Some("grant.requested") if e.get("break_glass").and_then(Value::as_bool) == Some(true) => break_glass += 1,
            _ => {}
        }
    }
    let issuance = lock(&app.issuance_us)
        .percentiles(&[50, 95, 99])
        .map(|p| p.iter().map(|us| ms(*us)).collect::<Vec<_>>().join(" / "));
    // From the trail's state in memory: a page view never reads the chain's history.
    let chain = app.trail.status();
    let verification = app.trail.last_verification();
    let exports = app.exporters.status();
    layout(
        "Admin",
        Some((who, csrf)),
        Some(app),
        html! {
            section #overview {
                h2 { "Overview" }
                dl.slis {
                    dt { "Issuance latency p50 / p95 / p99" }
                    dd #sli-issuance { (issuance.unwrap_or_else(|| "no tokens issued yet".to_owned())) }
                    dt { "Time to approval p50 / p95" }
                    dd #sli-approval { @if waits.is_empty() { "none yet" } @else { (pct(&waits, 50)) " s / " (pct(&waits, 95)) " s" } }
                    dt { "Active grants / pending requests" } dd #sli-active { (active.len()) " / " (pending) }
                    dt { "Break-glass uses (last 5,000 events)" } dd #sli-break-glass { (break_glass) }
                }
                h3 { "Denials by reason (last 5,000 events)" }
                (bars(&denials))
            }
            section {
                h2 { "Active grants" }
                table #active-grants {
                    thead { tr { th { "Grant" } th { "Subject" } th { "Scopes" } th { "Ends" } th {} } }
                    tbody { @for g in &active { tr data-id=(g.id) {
                        td { code { (g.id) } } td { (g.sub) } td { (g.scopes.join(" ")) }
                        td { @if let Some(e) = g.expires_at { span.countdown data-expires=(e) { (e.saturating_sub(now) / 60) " min" } } }
                        td { form.inline method="post" action="/ui/revoke" {
                            (csrf_field(csrf)) input type="hidden" name="kind" value="grant"; input type="hidden" name="value" value=(g.id);
                            input type="hidden" name="back" value="admin"; button type="submit" .revoke { "Revoke" } } }
                    } } }
                }
                form #revoke-form method="post" action="/ui/revoke" {
                    (csrf_field(csrf)) input type="hidden" name="back" value="admin";
                    label { "Revoke " select name="kind" { option value="grant" { "grant" } option value="sub" { "subject" } option value="jti" { "token id (jti)" } } }
                    input name="value" size="30" required;
                    button type="submit" { "Revoke" }
                }
            }
            section {
                h2 { "Audit timeline" }
                p #chain {
                    @if let Some(f) = &chain.last_error { span.error { "Last chain error: " (f) } br; }
                    "Chain: events " (chain.first_kept) "–" (chain.seq) " kept in " (chain.segments) " segment(s), "
                    (chain.bytes / (1 << 20)) " MiB; head " code { (chain.head) } " (seq " (chain.seq) ")"
                    @if let Some((seq, ts)) = chain.last_checkpoint { "; last checkpoint at seq " (seq) ", " (when(app, Some(ts))) }
                }
                p #verification { @match &verification {
                    None => { "Full verification: not run yet since start." }
                    Some(v) => { @match &v.report {
                        Ok(r) if r.problem.is_none() => { "Chain intact: " (r.summary()) " (checked " (when(app, Some(v.at))) ", " (format!("{:.1}", v.seconds)) " s)" }
                        Ok(r) => { span.error { "Chain broken: " (r.problem.clone().unwrap_or_default()) } " (checked " (when(app, Some(v.at))) ")" }
                        Err(e) => { span.error { "Cannot read the chain: " (e) } }
                    } }
                } }
                @if !exports.is_empty() {
                    table #exports {
                        thead { tr { th { "Export" } th { "Kind" } th { "Delivered to seq" } th { "Behind" } th { "State" } } }
                        tbody { @for x in &exports { tr {
                            td { (x.name) } td { (x.kind) } td { (x.acknowledged) } td { (x.lag) " events" }
                            td { @if x.connected { "connected" } @else { span.error { "not connected" @if let Some(e) = &x.last_error { ": " (e) } } } }
                        } } }
                    }
                }
                form method="get" action="/ui/admin" {
                    label { "Subject " input name="sub" value=[f_sub.as_deref()] size="12"; }
                    label { "Grant " input name="grant" value=[f_grant.as_deref()] size="20"; }
                    label { "Event " input name="event" value=[f_event.as_deref()] size="18"; }
                    label { "From (UTC) " input #from name="from" type="datetime-local" value=[f_from.as_deref()]; }
                    label { "To (UTC) " input #to name="to" type="datetime-local" value=[f_to.as_deref()]; }
                    button type="submit" { "Filter" }
                }
                @if bad_time { p.error #time-error { "A time is YYYY-MM-DDTHH:MM (UTC); that one was ignored." } }
                table #timeline {
                    thead { tr { th { "When" } th { "Event" } th { "Subject" } th { "Grant" } th { "Detail" } } }
                    tbody { @for e in &timeline { tr {
                        td { @if let Some(t) = event_time(e) { time title=(utc::format(t)) { (when(app, Some(t))) } } }
                        td { (e.get("event").and_then(Value::as_str).unwrap_or("")) }
                        td { (e.get("sub").and_then(Value::as_str).unwrap_or("")) }
                        td { (e.get("grant").and_then(Value::as_str).unwrap_or("")) }
                        td { (e.get("reason").or_else(|| e.get("comment")).or_else(|| e.get("scopes")).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default()) }
                    } } }
                }
            }
        },
    )
}

/// When an audit event happened: the sidecar's own events carry Unix seconds, shipped filter
/// events an RFC 3339 time.
fn event_time(e: &Value) -> Option<u64> {
    match e.get("ts")? {
        Value::Number(n) => n.as_u64(),
        Value::String(t) => utc::parse(t.get(..19)?),
        _ => None,
    }
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn pct(sorted: &[u64], p: usize) -> u64 {
    sorted.get((sorted.len().saturating_sub(1) * p) / 100).copied().unwrap_or(0)
}

/// A horizontal bar chart, drawn here as SVG (no script, no external library).
fn bars(counts: &BTreeMap<String, u64>) -> Markup {
    let max = counts.values().copied().max().unwrap_or(1).max(1);
    let rows = counts.len();
    html! {
        @if counts.is_empty() { p { "No denials." } } @else {
            svg #denials xmlns="http://www.w3.org/2000/svg" width="560" height=(rows * 22 + 4) role="img" aria-label="Denials by reason" {
                @for (i, (reason, n)) in counts.iter().enumerate() {
                    text x="0" y=(i * 22 + 15) font-size="13" { (reason) }
                    rect x="200" y=(i * 22 + 3) height="16" width=(1 + n * 300 / max) fill="#b03a2e" {}
                    text x=(206 + n * 300 / max) y=(i * 22 + 15) font-size="13" { (n) }
                }
            }
        }
    }
}

pub fn error(app: &App, who: Option<(&Subject, &str)>, message: &str) -> Markup {
    layout(
        "Not done",
        who,
        Some(app),
        html! { p.error role="alert" #error { (message) } p { a href="/ui/" { "Back" } } },
    )
}

pub fn signed_out() -> Markup {
    layout("Signed out", None, None, html! { p { a href="/ui/login" { "Sign in again" } } })
}
