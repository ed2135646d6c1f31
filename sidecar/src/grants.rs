//! The JIT loop's decisions: access requests, approvals, token exchange (RFC 8693), revocation.

use crate::app::App;
use crate::blocking::lock;
use crate::identity::Subject;
use crate::policy::Approval;
use crate::random::random_hex;
use crate::refusal::Refusal;
use crate::store::{Grant, GrantStatus, Revocation, RevocationKey, RevocationKind, WriteError};
use crate::unavailable::Unavailable;
use jitgate_token::claims::jti_hash;
use jitgate_token::mint::mint;
use serde::Deserialize;
use serde_json::{json, Value};

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const SUBJECT_TOKEN_TYPES: [&str; 3] =
    ["urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token", ACCESS_TOKEN_TYPE];
const MAX_SCOPES: usize = 32;
const MAX_JUSTIFICATION_BYTES: usize = 1024;

/// Body of `POST /v1/requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequest {
    /// Space-delimited scopes.
    pub scope: String,
    /// Seconds or `<n>s|m|h|d`.
    pub duration: crate::policy::Seconds,
    #[serde(default)]
    pub justification: String,
}

fn scopes_of(text: &str) -> Result<Vec<String>, Refusal> {
    let mut scopes: Vec<String> = Vec::new();
    for s in text.split(' ').filter(|s| !s.is_empty()) {
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    if scopes.is_empty() || scopes.len() > MAX_SCOPES {
        return Err(Refusal::invalid("invalid_scope", format!("between 1 and {MAX_SCOPES} scopes are required")));
    }
    Ok(scopes)
}

/// Creates a request: pending, or approved at once when every scope is automatic.
pub fn request(app: &App, who: &Subject, body: AccessRequest) -> Result<Grant, Refusal> {
    let policy = &app.config.policy;
    let scopes = scopes_of(&body.scope)?;
    if body.justification.len() > MAX_JUSTIFICATION_BYTES || body.justification.chars().any(char::is_control) {
        return Err(Refusal::invalid("invalid_request", "justification: at most 1024 bytes, no control characters"));
    }
    let mut required = 0u32;
    let mut break_glass = false;
    for scope in &scopes {
        let Some(p) = policy.scopes.get(scope) else {
            return Err(Refusal::invalid("invalid_scope", format!("unknown scope `{scope}`")));
        };
        if !policy.may_request(&who.groups, scope) {
            return Err(Refusal::Forbidden(format!("policy does not let `{}` request `{scope}`", who.sub)));
        }
        if body.duration.0 == 0 || body.duration.0 > p.max_grant_s {
            return Err(Refusal::invalid(
                "invalid_request",
                format!("duration must be 1..={} seconds for `{scope}`", p.max_grant_s),
            ));
        }
        if let Some(re) = &p.justification {
            if !re.is_match(&body.justification) {
                return Err(Refusal::invalid(
                    "invalid_request",
                    format!("justification for `{scope}` must match `{}`", re.as_str()),
                ));
            }
        }
        if let Approval::Approvers { count, .. } = p.approval {
            required = required.max(count);
        }
        break_glass |= p.break_glass;
    }
    let now = app.clock.now();
    let mut grant = Grant {
        id: format!("g-{}", random_hex(8)),
        iss: who.iss.clone(),
        sub: who.sub.clone(),
        scopes,
        duration_s: body.duration.0,
        justification: body.justification,
        break_glass,
        status: GrantStatus::Pending,
        required_approvals: required,
        approvers: Vec::new(),
        created_at: now,
        approved_at: None,
        expires_at: None,
        denied_by: None,
        decided_at: None,
        version: 0,
        end_announced: false,
    };
    if required == 0 {
        approve_now(&mut grant, now);
    }
    let grant = app.store()?.put_grant(grant).map_err(written)?;
    app.audit(json!({"event": "grant.requested", "grant": grant.id, "iss": grant.iss, "sub": grant.sub, "scopes": grant.scopes,
        "duration_s": grant.duration_s, "justification": grant.justification, "break_glass": grant.break_glass,
        "status": grant.status}))?;
    if grant.status == GrantStatus::Approved {
        audit_approved(app, &grant, "policy:auto")?;
    }
    Ok(grant)
}

fn approve_now(grant: &mut Grant, now: u64) {
    grant.status = GrantStatus::Approved;
    grant.approved_at = Some(now);
    grant.decided_at = Some(now);
    grant.expires_at = Some(now.saturating_add(grant.duration_s));
}

fn written(e: WriteError) -> Refusal {
    match e {
        WriteError::Conflict => Refusal::ChangedConcurrently,
        WriteError::Failed(e) => Refusal::Unavailable(e),
    }
}

fn audit_approved(app: &App, g: &Grant, by: &str) -> Result<u64, Unavailable> {
    app.audit(json!({"event": "grant.approved", "grant": g.id, "iss": g.iss, "sub": g.sub, "scopes": g.scopes,
        "approver": by, "expires_at": g.expires_at, "break_glass": g.break_glass}))
}

/// Whether `who` approves `grant`: it has scopes that need approval, and `who` is an approver for
/// each of them. A grant of automatic scopes only has no approvers.
pub fn may_approve(app: &App, who: &Subject, grant: &Grant) -> bool {
    let mut needs_approval = false;
    for scope in &grant.scopes {
        match app.config.policy.scopes.get(scope).map(|p| &p.approval) {
            Some(Approval::Approvers { groups, .. }) if groups.iter().any(|g| who.groups.contains(g)) => {
                needs_approval = true;
            }
            Some(Approval::Auto) => {}
            Some(Approval::Approvers { .. }) | None => return false,
        }
    }
    needs_approval
}

/// An approver's decision on a pending request. With several replicas it is written only over
/// the version it was made from: if another replica decided first, this one is made again on
/// the new state (and then finds the request no longer pending).
/// Records `who`'s approval or denial of request `id`, with an optional comment for the audit trail.
pub fn decide(app: &App, who: &Subject, id: &str, approve: bool, comment: Option<&str>) -> Result<Grant, Refusal> {
    for _ in 0..8 {
        match decide_once(app, who, id, approve, comment) {
            Err(Refusal::ChangedConcurrently) => continue,
            done => return done,
        }
    }
    Err(Refusal::Unavailable("the request keeps changing; retry".to_owned()))
}

fn decide_once(app: &App, who: &Subject, id: &str, approve: bool, comment: Option<&str>) -> Result<Grant, Refusal> {
    let mut store = app.store()?;
    let Some(mut grant) = store.state.grants.get(id).cloned() else {
        return Err(Refusal::NotFound(format!("no request `{id}`")));
    };
    if who.is(&grant.owner()) {
        return Err(Refusal::Forbidden("nobody approves or denies their own request".to_owned()));
    }
    if !may_approve(app, who, &grant) {
        return Err(Refusal::Forbidden(format!("`{}` is not an approver for this request", who.sub)));
    }
    if grant.status != GrantStatus::Pending {
        return Err(Refusal::NotPending(format!("request `{id}` is {:?}", grant.status)));
    }
    if grant.approvers.iter().any(|a| who.is(a)) {
        return Err(Refusal::AlreadyApproved);
    }
    let now = app.clock.now();
    // Past its time but not yet swept: as expired as it will be in a few seconds.
    if grant.created_at.saturating_add(app.config.policy.pending_ttl_s) <= now {
        return Err(Refusal::NotPending(format!("request `{id}` is Expired")));
    }
    if approve {
        grant.approvers.push(who.id());
        if u32::try_from(grant.approvers.len()).unwrap_or(u32::MAX) >= grant.required_approvals {
            approve_now(&mut grant, now);
        }
    } else {
        grant.status = GrantStatus::Denied;
        grant.denied_by = Some(who.id());
        grant.decided_at = Some(now);
    }
    let grant = store.put_grant(grant).map_err(written)?;
    drop(store);
    if let Some(c) = comment {
        app.audit(json!({"event": "grant.comment", "grant": grant.id, "by": who.sub, "by_iss": who.iss,
            "approve": approve, "comment": c}))?;
    }
    match grant.status {
        GrantStatus::Approved => audit_approved(app, &grant, &who.sub)?,
        GrantStatus::Denied => app.audit(json!({"event": "grant.denied", "grant": grant.id, "iss": grant.iss,
            "sub": grant.sub, "scopes": grant.scopes, "approver": who.sub, "approver_iss": who.iss}))?,
        GrantStatus::Pending => app.audit(json!({"event": "grant.approval_recorded", "grant": grant.id,
            "iss": grant.iss, "sub": grant.sub, "approver": who.sub, "approver_iss": who.iss,
            "approvals": grant.approvers.len(), "required": grant.required_approvals}))?,
        // Not reachable: the request was pending and a decision never expires it.
        GrantStatus::Expired => 0,
    };
    Ok(grant)
}

/// Expires requests left undecided past the policy's `pending_ttl` and announces the end of
/// approved grants (`grant.expired`), each once: the change is a versioned write, so of two
/// replicas sweeping at once only one announces it. Revoked grants end without an announcement
/// (their revocation was one). Returns how many were announced.
pub fn expire_due(app: &App) -> Result<usize, Unavailable> {
    let now = app.clock.now();
    let due: Vec<(Grant, bool)> = {
        let store = app.store()?;
        let state = &store.state;
        let is_due = |g: &Grant| match g.status {
            GrantStatus::Pending => g.created_at.saturating_add(app.config.policy.pending_ttl_s) <= now,
            GrantStatus::Approved => !g.end_announced && g.expires_at.is_some_and(|e| e <= now),
            GrantStatus::Denied | GrantStatus::Expired => false,
        };
        state
            .grants
            .values()
            .filter(|g| is_due(g))
            .map(|g| (g.clone(), state.is_revoked(RevocationKind::Grant, &g.id)))
            .collect()
    };
    let mut announced = 0;
    for (mut g, revoked) in due {
        let stage = if g.status == GrantStatus::Pending {
            g.status = GrantStatus::Expired;
            g.decided_at = Some(now);
            "pending"
        } else {
            g.end_announced = true;
            "active"
        };
        let written = app.store()?.put_grant(g);
        match written {
            Ok(g) if !revoked => {
                app.audit(json!({"event": "grant.expired", "grant": g.id, "iss": g.iss, "sub": g.sub,
                    "scopes": g.scopes, "stage": stage, "break_glass": g.break_glass}))?;
                announced += 1;
            }
            Ok(_) => {}
            // Decided or swept elsewhere meanwhile: the next sweep judges the new state.
            Err(WriteError::Conflict) => {}
            Err(WriteError::Failed(e)) => return Err(Unavailable(e)),
        }
    }
    Ok(announced)
}

/// Fields of an RFC 8693 request, each at most once (RFC 6749 §3.2); unknown ones are ignored.
#[derive(Debug, Default)]
pub struct ExchangeForm {
    pub grant_type: Option<String>,
    pub subject_token: Option<String>,
    pub subject_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    pub audience: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
    /// RFC 9449 §10: bind the token to this key thumbprint.
    pub dpop_jkt: Option<String>,
    /// A public client's name for itself (RFC 6749 §2.3.1): recorded, never trusted.
    pub client_id: Option<String>,
}

impl ExchangeForm {
    pub fn parse(body: &[u8]) -> Result<ExchangeForm, Refusal> {
        let mut f = ExchangeForm::default();
        for (k, v) in form_urlencoded::parse(body) {
            let slot = match k.as_ref() {
                "grant_type" => &mut f.grant_type,
                "subject_token" => &mut f.subject_token,
                "subject_token_type" => &mut f.subject_token_type,
                "requested_token_type" => &mut f.requested_token_type,
                "audience" => &mut f.audience,
                "scope" => &mut f.scope,
                "resource" => &mut f.resource,
                "dpop_jkt" => &mut f.dpop_jkt,
                "client_id" => &mut f.client_id,
                _ => continue,
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(Refusal::invalid("invalid_request", format!("`{k}` appears more than once")));
            }
        }
        Ok(f)
    }
}

/// The person an exchange's `subject_token` names, or the RFC 8693 error for it.
pub fn subject(app: &App, subject_token: Option<&str>) -> Result<Subject, Refusal> {
    let token = subject_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Refusal::invalid("invalid_request", "`subject_token` is required"))?;
    app.identity
        .verify(token, app.clock.now())
        .map_err(|reason| Refusal::invalid("invalid_request", format!("subject_token rejected: {reason}")))
}

fn required<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str, Refusal> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Refusal::invalid("invalid_request", format!("`{name}` is required")))
}

/// RFC 8693 §2.1: issues a JIT token inside an active grant, or says why not.
pub fn exchange(app: &App, form: &ExchangeForm) -> Result<Value, Refusal> {
    timed(app, || exchange_now(app, form, None, None))
}

/// An exchange for a person already identified (by the console's authenticating proxy, or by a
/// subject token checked before a DPoP proof was spent): everything else as `exchange`.
/// `proven_jkt`: the key of the request's checked DPoP proof (`crate::dpop`); the token is bound to it.
pub fn exchange_as(app: &App, who: &Subject, form: &ExchangeForm, proven_jkt: Option<&str>) -> Result<Value, Refusal> {
    timed(app, || exchange_now(app, form, Some(who), proven_jkt))
}

fn timed(app: &App, f: impl FnOnce() -> Result<Value, Refusal>) -> Result<Value, Refusal> {
    let t0 = std::time::Instant::now();
    let issued = f()?;
    lock(&app.issuance_us).record(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
    Ok(issued)
}

fn exchange_now(
    app: &App,
    form: &ExchangeForm,
    identified: Option<&Subject>,
    proven_jkt: Option<&str>,
) -> Result<Value, Refusal> {
    if required(&form.grant_type, "grant_type")? != TOKEN_EXCHANGE {
        return Err(Refusal::invalid("unsupported_grant_type", "only token exchange is supported"));
    }
    let subject_token = match identified {
        Some(_) => "",
        None => required(&form.subject_token, "subject_token")?,
    };
    if !SUBJECT_TOKEN_TYPES.contains(&required(&form.subject_token_type, "subject_token_type")?) {
        return Err(Refusal::invalid("invalid_request", "unsupported subject_token_type"));
    }
    if form.requested_token_type.as_deref().is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(Refusal::invalid("invalid_request", "only access tokens are issued"));
    }
    let audience = match form.audience.as_deref() {
        None => app.config.audiences.first().cloned().unwrap_or_default(),
        Some(a) if app.config.audiences.iter().any(|x| x == a) => a.to_owned(),
        Some(_) => return Err(Refusal::invalid("invalid_target", "audience is not served by this issuer")),
    };
    if form.resource.as_ref().is_some_and(|r| r.len() > 2048) {
        return Err(Refusal::invalid("invalid_target", "resource longer than 2048 bytes"));
    }
    let jkt = match (form.dpop_jkt.as_deref(), proven_jkt) {
        (Some(asked), Some(proven)) if asked != proven => {
            return Err(Refusal::invalid(
                "invalid_dpop_proof",
                "dpop_jkt is not the thumbprint of the DPoP proof's key",
            ));
        }
        (_, Some(proven)) => Some(proven),
        (Some(j), None) if j.len() == 43 && j.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => {
            Some(j)
        }
        (Some(_), None) => return Err(Refusal::invalid("invalid_request", "dpop_jkt is not a SHA-256 JWK thumbprint")),
        (None, None) => None,
    };
    if form
        .client_id
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > 256 || !c.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(Refusal::invalid("invalid_request", "client_id: 1-256 visible ASCII characters"));
    }
    let now = app.clock.now();
    let who = match identified {
        Some(who) => who.clone(),
        None => subject(app, Some(subject_token))?,
    };
    let refuse = |e: Refusal| -> Result<Value, Refusal> {
        app.audit(json!({"event": "token.exchange_refused", "iss": who.iss, "sub": who.sub, "reason": e.code(),
            "scopes_requested": form.scope, "resource": form.resource}))?;
        Err(e)
    };

    let store = app.store()?;
    let state = &store.state;
    let subject_revoked_at = state
        .revocation(&RevocationKey { kind: RevocationKind::Sub, iss: Some(who.iss.clone()), value: who.sub.clone() })
        .map(|r| r.at);
    let usable = |g: &&Grant| {
        who.is(&g.owner())
            && g.is_active(now)
            && !state.is_revoked(RevocationKind::Grant, &g.id)
            && subject_revoked_at.is_none_or(|at| at < g.approved_at.unwrap_or(0))
    };
    let wanted = match form.scope.as_deref() {
        Some(s) => Some(scopes_of(s)?),
        None => None,
    };
    let covers = |g: &Grant| wanted.as_ref().is_none_or(|w| w.iter().all(|s| g.scopes.contains(s)));
    let grant = state.grants.values().filter(usable).filter(|g| covers(g)).max_by_key(|g| g.expires_at).cloned();
    let pending = state
        .grants
        .values()
        .filter(|g| who.is(&g.owner()) && g.status == GrantStatus::Pending && covers(g))
        .max_by_key(|g| g.created_at)
        .map(|g| g.id.clone());
    drop(store);
    let Some(grant) = grant else {
        return refuse(match pending {
            Some(request_id) => Refusal::AwaitingApproval { request_id },
            None => Refusal::invalid("invalid_scope", "no active grant covers the requested scope"),
        });
    };
    let scopes = wanted.unwrap_or_else(|| grant.scopes.clone());
    let policy = &app.config.policy;
    if let Some(s) = scopes.iter().find(|s| !policy.may_request(&who.groups, s)) {
        return refuse(Refusal::invalid("invalid_scope", format!("policy no longer allows `{s}`")));
    }
    let ttl = scopes.iter().filter_map(|s| policy.scopes.get(s)).map(|p| p.max_ttl_s).min().unwrap_or(0);
    let exp = now.saturating_add(ttl).min(grant.expires_at.unwrap_or(now));
    if exp <= now {
        return refuse(Refusal::invalid("invalid_scope", "the grant has expired"));
    }
    let jti = random_hex(16);
    let approver = if grant.approvers.is_empty() {
        "policy:auto".to_owned()
    } else {
        grant.approvers.iter().map(|a| a.sub.as_str()).collect::<Vec<_>>().join(",")
    };
    let mut claims = json!({"iss": app.config.issuer, "aud": audience, "sub": who.sub, "iat": now, "exp": exp,
        "jti": jti, "scope": scopes.join(" "),
        "jit": {"grant": grant.id, "reason": grant.justification, "approver": approver, "break_glass": grant.break_glass,
            "idp": who.iss}});
    if let (Some(jkt), Some(obj)) = (jkt, claims.as_object_mut()) {
        obj.insert("cnf".to_owned(), json!({ "jkt": jkt }));
    }
    let token = {
        let keys = app.keys()?;
        let key = keys.ring.active().ok_or_else(|| Refusal::Unavailable("no active signing key".to_owned()))?;
        mint(key, "at+jwt", &claims).map_err(|e| Refusal::Unavailable(e.to_string()))?
    };
    app.audit(json!({"event": "token.exchange", "iss": who.iss, "sub": who.sub, "grant": grant.id, "jti_hash": jti_hash(&app.config.issuer, &jti),
        "scopes_granted": scopes.join(" "), "token_exp": exp, "break_glass": grant.break_glass, "dpop_bound": jkt.is_some(),
        "dpop_proof": proven_jkt.is_some(), "audience": audience, "resource": form.resource, "client_id": form.client_id}))?;
    Ok(json!({"access_token": token, "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" }, "expires_in": exp - now, "scope": scopes.join(" ")}))
}

/// What `POST /v1/revoke` names: exactly one of a token, a jti, a grant or a subject.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub token: Option<String>,
    pub jti: Option<String>,
    pub grant: Option<String>,
    pub sub: Option<String>,
    /// The identity issuer of `sub` (default: the caller's own).
    pub iss: Option<String>,
    #[serde(default)]
    pub reason: String,
}

/// What a revocation call did: new feed entries, and how many it named were already revoked.
#[derive(Debug)]
pub struct Revoked {
    pub added: Vec<Revocation>,
    pub unchanged: usize,
}

/// Revokes what `req` names. A revocation already in the feed (same kind and value, lasting as
/// long) adds nothing; a subject revoking its own tokens, grants or self is rate-limited.
pub fn revoke(app: &App, who: &Subject, req: &RevokeRequest) -> Result<Revoked, Refusal> {
    let named = [req.token.is_some(), req.jti.is_some(), req.grant.is_some(), req.sub.is_some()];
    if named.iter().filter(|x| **x).count() != 1 {
        return Err(Refusal::invalid("invalid_request", "name exactly one of token, jti, grant, sub"));
    }
    if req.iss.is_some() && req.sub.is_none() {
        return Err(Refusal::invalid("invalid_request", "iss goes with sub"));
    }
    if req.reason.len() > MAX_JUSTIFICATION_BYTES {
        return Err(Refusal::invalid("invalid_request", "reason longer than 1024 bytes"));
    }
    let now = app.clock.now();
    let admin = app.config.policy.is_admin(&who.groups);
    let max_ttl = app.config.max_token_ttl_s();
    let mut store = app.store()?;
    let owns = |id: &str| store.state.grants.get(id).is_some_and(|g| who.is(&g.owner()));
    let grant_allowed =
        |id: &str| store.state.grants.get(id).is_some_and(|g| admin || who.is(&g.owner()) || may_approve(app, who, g));
    // (kind, iss, value, until), and whether only the caller's own rights allowed it.
    let mut targets: Vec<(RevocationKind, Option<String>, String, u64)> = Vec::new();
    let mut self_service = false;
    if let Some(token) = &req.token {
        // RFC 7009 §2.2: an invalid or foreign token is not an error; nothing is revoked.
        let Some(t) = own_token_claims(app, token) else { return Ok(Revoked { added: Vec::new(), unchanged: 0 }) };
        let own = t.sub == who.sub && t.idp.as_deref() == Some(who.iss.as_str());
        if !(admin || own || t.grant.as_deref().is_some_and(grant_allowed)) {
            return Err(Refusal::Forbidden("not your token, and you do not approve its grant".to_owned()));
        }
        self_service = !admin && own;
        targets.push((RevocationKind::Jti, None, t.jti, t.exp.saturating_add(app.config.clock_skew_s)));
    } else if let Some(jti) = &req.jti {
        if !admin {
            return Err(Refusal::Forbidden("revoking by jti is for admins; send the token instead".to_owned()));
        }
        targets.push((RevocationKind::Jti, None, jti.clone(), now.saturating_add(max_ttl)));
    } else if let Some(id) = &req.grant {
        if !store.state.grants.contains_key(id) {
            return Err(Refusal::NotFound(format!("no grant `{id}`")));
        }
        if !grant_allowed(id) {
            return Err(Refusal::Forbidden("not your grant, and you do not approve it".to_owned()));
        }
        self_service = !admin && owns(id);
        let until = store.state.grants.get(id).and_then(|g| g.expires_at).unwrap_or(now).max(now);
        targets.push((RevocationKind::Grant, None, id.clone(), until.saturating_add(max_ttl)));
    } else if let Some(sub) = &req.sub {
        let iss = req.iss.clone().unwrap_or_else(|| who.iss.clone());
        let own = *sub == who.sub && iss == who.iss;
        if !(admin || own) {
            return Err(Refusal::Forbidden("revoking a subject is for admins or the subject itself".to_owned()));
        }
        self_service = !admin;
        targets.push((RevocationKind::Sub, Some(iss), sub.clone(), now.saturating_add(max_ttl)));
    }
    if self_service && !app.allow_self_revocation(&who.id(), now)? {
        return Err(Refusal::RateLimited(format!(
            "at most {} revocations of your own per minute",
            app.config.revocations.self_per_minute
        )));
    }
    let mut added = Vec::new();
    let mut unchanged = 0;
    for (kind, iss, value, until) in targets {
        if value.is_empty() || value.len() > 512 || iss.as_ref().is_some_and(|i| i.is_empty() || i.len() > 512) {
            return Err(Refusal::invalid("invalid_request", "the revoked value must be 1-512 bytes"));
        }
        // A subject revocation covers tokens issued up to its time, so a later one covers more.
        let key = RevocationKey { kind, iss: iss.clone(), value: value.clone() };
        let covered = store
            .state
            .revocation(&key)
            .is_some_and(|r| r.until >= until && (kind != RevocationKind::Sub || r.at >= now));
        if covered {
            unchanged += 1;
            continue;
        }
        let r = Revocation { seq: store.state.next_revocation_seq(), kind, value, iss, at: now, until };
        added.push(store.add_revocation(r).map_err(Refusal::Unavailable)?);
    }
    drop(store);
    app.update_gauges();
    for r in &added {
        let value =
            if r.kind == RevocationKind::Jti { jti_hash(&app.config.issuer, &r.value) } else { r.value.clone() };
        app.audit(json!({"event": "token.revoked", "kind": r.kind, "value": value, "iss": r.iss, "seq": r.seq,
            "by": who.sub, "by_iss": who.iss, "reason": req.reason}))?;
    }
    Ok(Revoked { added, unchanged })
}

/// The claims of a token this sidecar signed that revocation needs (signature checked, time not).
struct OwnToken {
    sub: String,
    jti: String,
    exp: u64,
    grant: Option<String>,
    /// `jit.idp`: the identity issuer of `sub`.
    idp: Option<String>,
}

fn own_token_claims(app: &App, token: &str) -> Option<OwnToken> {
    let set = app.keys().ok()?.ring.key_set(app.clock.now(), app.config.max_token_ttl_s()).ok()?;
    let jws = jitgate_token::jws::verify(token, &set, jitgate_token::DEFAULT_MAX_TOKEN_BYTES).ok()?;
    let claims: Value = serde_json::from_slice(&jws.payload).ok()?;
    if claims.get("iss")?.as_str()? != app.config.issuer {
        return None;
    }
    let jit = claims.get("jit");
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    Some(OwnToken {
        sub: claims.get("sub")?.as_str()?.to_owned(),
        jti: claims.get("jti")?.as_str()?.to_owned(),
        exp: claims.get("exp")?.as_u64()?,
        grant: text(jit.and_then(|j| j.get("grant"))),
        idp: text(jit.and_then(|j| j.get("idp"))),
    })
}
