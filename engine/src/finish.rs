//! A final decision becomes an action, filter state, metrics and one audit event.

use crate::action::Action;
use crate::audit::{self, AuditEvent};
use crate::decision::Decision;
use crate::engine::Engine;
use crate::host::{Host, Level};
use crate::metrics::Metric;
use crate::names::{CLAIM_HEADERS, STATE_DECISION, STATE_REASON};
use crate::request::{text, Request, SingleHeader};
use crate::response;
use crate::rules::{self, Replay};
use std::borrow::Cow;

impl Engine {
    /// The action for a final decision, recorded.
    pub(crate) fn finish(&self, host: &impl Host, req: &Request<'_>, d: &Decision<'_>, start: u64) -> Action {
        let action = if d.reason.is_allow() {
            let mut set = Vec::with_capacity(4);
            if let Some(t) = &d.token {
                set.push(("x-jit-sub", t.claims.sub.clone()));
                set.push(("x-jit-scope", t.claims.scope.clone()));
                if let Some(jit) = &t.claims.jit {
                    set.push(("x-jit-grant", jit.grant.clone()));
                }
            }
            let sent = CLAIM_HEADERS.iter().zip(req.claim_headers_sent).filter(|(_, sent)| *sent);
            let mut remove: Vec<Cow<'static, str>> = sent.map(|(h, _)| Cow::Borrowed(*h)).collect();
            if self.config.strip_token && d.token.is_some() {
                remove.push(Cow::Borrowed("authorization"));
            }
            // The identity token never goes upstream, whether or not it was exchanged.
            if let (Some(h), false) = (self.subject_header(), req.subject == SingleHeader::Absent) {
                remove.push(Cow::Owned(h.to_owned()));
            }
            let mut reply = None;
            if let Some(token) = &d.exchanged {
                if !self.config.strip_token {
                    set.push(("authorization", format!("Bearer {token}")));
                }
                let returns =
                    self.config.sidecar.as_ref().and_then(|s| s.exchange.as_ref()).is_some_and(|x| x.return_token);
                reply = returns.then(|| token.clone());
            }
            Action::Continue { remove, set, reply }
        } else {
            let challenge = response::Challenge {
                missing_scopes: &d.missing_scopes,
                dpop: d.rule.is_some_and(|r| r.replay == Replay::Dpop),
                nonce: d.nonce.as_deref(),
                access_request: d.access_request.as_deref(),
                resource_metadata: self
                    .config
                    .resource_metadata
                    .as_ref()
                    .map(|m| d.rule.and_then(|r| r.resource_metadata.as_deref()).unwrap_or(m.root_url.as_str())),
            };
            Action::Respond(response::deny(d.reason, &self.config.realm, req.request_id, challenge))
        };
        self.record(host, req, d, &action, start);
        action
    }

    pub(crate) fn record(&self, host: &impl Host, req: &Request<'_>, d: &Decision<'_>, action: &Action, start: u64) {
        let allow = d.reason.is_allow();
        let code = d.reason.code();
        host.count(if allow { Metric::Allow } else { Metric::Deny(code) });
        if self.config.filter_state {
            host.set_filter_state(STATE_DECISION, if allow { "allow" } else { "deny" });
            host.set_filter_state(STATE_REASON, code);
        }

        let ship = self.config.sidecar.as_ref().is_some_and(|s| s.audit.is_some());
        if !ship && !host.log_enabled(Level::Info) {
            // Nobody would read the line: skip building it (a third of a cached request's time),
            // but never silently: the decision counts as an audit event lost.
            host.count(Metric::AuditDropped);
            host.record(Metric::DecisionLatencyUs, host.now_nanos().saturating_sub(start) / 1000);
            return;
        }
        let claims = d.token.as_ref().map(|t| &t.claims);
        let jit = claims.and_then(|c| c.jit.as_ref());
        let client = host.property(&["source", "address"]);
        let client = client.as_deref().map(text).map(audit::clip);
        let status = match action {
            Action::Respond(r) => r.status,
            Action::Continue { .. } | Action::Call(..) => 200,
        };
        let event = AuditEvent {
            ts: audit::rfc3339(start),
            event: if allow { "access.allow" } else { "access.deny" },
            request_id: req.request_id,
            reason: code,
            status,
            rule: d.rule.map(|r| r.name.as_str()),
            sub: claims.map(|c| audit::clip(&c.sub)),
            jti_hash: claims.map(|c| audit::jti_hash(&c.iss, &c.jti)),
            grant: jit.map(|j| j.grant.as_str()),
            scopes_required: d.rule.map_or(&[], |r| r.scopes.as_slice()),
            scopes_granted: claims.map(|c| c.scope.as_str()),
            method: audit::clip(req.method),
            authority: audit::clip(req.authority),
            path: audit::clip(rules::path_only(req.path)),
            client,
            token_exp: claims.map(|c| c.exp),
            replay: d.rule.map_or("none", |r| r.replay.name()),
            break_glass: jit.is_some_and(|j| j.break_glass),
            latency_us: host.now_nanos().saturating_sub(start) / 1000,
        };
        host.record(Metric::DecisionLatencyUs, event.latency_us);
        let line = event.to_line();
        host.log(Level::Info, &line);
        if ship && !self.state.audit_queue().is_some_and(|mut q| q.push(line)) {
            host.count(Metric::AuditDropped);
        }
    }
}
