//! Background work of the root context: key fetches, revocation polls, the fleet nonce key and
//! audit shipping, each scheduled on the tick and fed back with the sidecar's answer.

use crate::cache::CacheKey;
use crate::config::{Config, NonceKeySource};
use crate::host::{Host, Level};
use crate::metrics::Metric;
use crate::sidecar::{self, Answer, Call};
use crate::state::SharedState;
use jitgate_token::{KeySet, Verifier};
use sha2::{Digest, Sha256};

/// Background work of the root context, one call each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    Jwks,
    Revocations,
    /// The fleet's DPoP nonce key (`dpop_nonce_key: {sidecar: true}`).
    NonceKey,
    /// A batch of audit events (JSON objects), put back in the queue if shipping fails.
    Audit(Vec<String>),
}

/// Audit batches in flight at once: enough to drain a busy worker between ticks.
const MAX_FLUSHES_IN_FLIGHT: usize = 4;
/// Keep a batch well under the sidecar's 1 MiB body limit.
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// Root context tick: the granularity of every background schedule.
pub const TICK_MS: u64 = 100;
/// A failed key fetch is retried after this long; an unknown kid brings the next fetch this close.
const JWKS_RETRY_MS: u64 = 1000;
/// The fleet's DPoP nonce key is fetched again this often.
const NONCE_KEY_REFRESH_MS: u64 = 60_000;
const JWKS_EARLY_REFRESH_MS: u64 = 5000;

/// The tick period of the background work, when some is configured.
pub fn tick_period_ms(config: &Config) -> Option<u64> {
    let s = config.sidecar.as_ref()?;
    let nonce_key = config.nonce_key == NonceKeySource::Sidecar;
    (s.jwks_refresh_s.is_some() || s.revocations.is_some() || s.audit.is_some() || nonce_key).then_some(TICK_MS)
}

impl SharedState {
    /// Background calls due at `now_ms`: key fetch, revocation poll, audit batches.
    pub fn due_calls(&self, config: &Config, now_ms: u64) -> Vec<(Task, Call)> {
        let Some(s) = &config.sidecar else { return Vec::new() };
        let Some(mut sch) = self.schedule() else { return Vec::new() };
        let mut calls = Vec::new();
        if s.jwks_refresh_s.is_some() && !sch.jwks_busy && now_ms >= sch.jwks_due {
            sch.jwks_busy = true;
            sch.jwks_last_attempt = now_ms;
            calls.push((Task::Jwks, Call::get(sidecar::PATH_JWKS)));
        }
        let since = self.revocations().map(|r| r.since());
        if let (Some(p), false, true, Some(since)) = (s.revocations, sch.poll_busy, now_ms >= sch.poll_due, since) {
            sch.poll_busy = true;
            let path = format!("{}?since={since}&limit={}", sidecar::PATH_REVOCATIONS, p.page_size);
            calls.push((Task::Revocations, Call::get(path)));
        }
        let fetch_nonce_key = config.nonce_key == NonceKeySource::Sidecar;
        if fetch_nonce_key && !sch.nonce_key_busy && now_ms >= sch.nonce_key_due {
            sch.nonce_key_busy = true;
            calls.push((Task::NonceKey, Call::get(sidecar::PATH_NONCE_KEY)));
        }
        if let (Some(a), Some(mut queue)) = (s.audit, self.audit_queue()) {
            // A full batch goes at once; a partial one waits for the flush interval.
            while sch.flushes_in_flight < MAX_FLUSHES_IN_FLIGHT
                && !queue.is_empty()
                && (queue.len() >= a.batch_events || now_ms >= sch.flush_due)
            {
                let batch = queue.take(a.batch_events, MAX_BATCH_BYTES);
                sch.flushes_in_flight += 1;
                sch.flush_due = now_ms.saturating_add(a.flush_ms);
                // The body is built first so the batch itself moves into the task (kept for a retry).
                let call = sidecar::audit_call(&batch);
                calls.push((Task::Audit(batch), call));
            }
        }
        calls
    }

    /// The answer to a background call (a failed dispatch is an answer with no status).
    pub fn on_task_answer(&self, config: &Config, host: &impl Host, task: Task, answer: Answer<'_>, now_ms: u64) {
        let Some(s) = &config.sidecar else { return };
        let Some(mut sch) = self.schedule() else { return };
        let now_s = now_ms / 1000;
        match task {
            Task::Jwks => {
                sch.jwks_busy = false;
                let ok = self.install_jwks(config, host, answer, &mut sch.jwks_digest);
                host.count(Metric::JwksFetch(ok));
                let refresh_ms = s.jwks_refresh_s.unwrap_or(60).saturating_mul(1000);
                sch.jwks_due = now_ms.saturating_add(if ok { refresh_ms } else { JWKS_RETRY_MS.min(refresh_ms) });
            }
            Task::Revocations => {
                sch.poll_busy = false;
                sch.poll_due = now_ms.saturating_add(s.revocations.map_or(1000, |p| p.poll_ms));
                let applied = match answer.status {
                    Some(200) if answer.body.len() <= sidecar::MAX_ANSWER_BYTES => match self.revocations_mut() {
                        Some(mut r) => r.apply(answer.body, now_s).map_err(|e| format!("{e:?}")),
                        None => Err("the revocation list is unreadable".to_owned()),
                    },
                    status => Err(format!("status {}", status.map_or("none".to_owned(), |s| s.to_string()))),
                };
                host.count(Metric::RevocationPoll(applied.is_ok()));
                match applied {
                    // More pages: asked for at once (a cold start against a large feed). Entries
                    // revoked since the last poll may sit in the token cache: it checks
                    // revocations on every hit, so nothing needs evicting here.
                    Ok(more) => {
                        if more {
                            sch.poll_due = now_ms;
                        }
                    }
                    Err(e) if self.revocations().is_none_or(|r| r.waiting_for_acknowledgement()) => host.log(
                        Level::Error,
                        &format!(
                            "jitgate: the revocation feed went back or was lost ({e}); protected routes fail \
                             closed until an admin acknowledges it (POST /v1/revocations/acknowledge)"
                        ),
                    ),
                    Err(e) => host.log(Level::Warn, &format!("jitgate: revocation poll failed: {e}")),
                }
            }
            Task::NonceKey => {
                sch.nonce_key_busy = false;
                let key = sidecar::parse_nonce_key(answer);
                let refresh_ms = if key.is_some() { NONCE_KEY_REFRESH_MS } else { JWKS_RETRY_MS };
                sch.nonce_key_due = now_ms.saturating_add(refresh_ms);
                match key {
                    Some(k) => self.set_nonce_key(k),
                    None => host.log(Level::Warn, "jitgate: DPoP nonce key fetch failed; retrying"),
                }
            }
            Task::Audit(batch) => {
                sch.flushes_in_flight = sch.flushes_in_flight.saturating_sub(1);
                let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
                match sidecar::shipped(answer) {
                    sidecar::Shipped::Accepted => host.add(Metric::AuditShipped, n),
                    sidecar::Shipped::Refused => {
                        host.add(Metric::AuditDropped, n);
                        host.log(Level::Error, &format!("jitgate: the sidecar refused an audit batch of {n} events"));
                    }
                    sidecar::Shipped::Retry => {
                        let dropped = self.audit_queue().map_or(batch.len(), |mut q| q.put_back(batch));
                        if dropped > 0 {
                            host.add(Metric::AuditDropped, u64::try_from(dropped).unwrap_or(u64::MAX));
                        }
                        host.log(Level::Warn, &format!("jitgate: audit batch of {n} events not accepted; will retry"));
                    }
                }
            }
        }
    }

    /// Installs a fetched JWKS as the trusted keys; false (keeping the last good set) if unusable.
    fn install_jwks(
        &self,
        config: &Config,
        host: &impl Host,
        answer: Answer<'_>,
        installed: &mut Option<CacheKey>,
    ) -> bool {
        let keys = sidecar::jwks_body(answer).ok_or_else(|| format!("status {:?}", answer.status)).and_then(|body| {
            let keys = KeySet::from_jwks(body).map_err(|e| e.to_string())?;
            if keys.is_empty() {
                return Err("empty key set".to_owned());
            }
            Verifier::new(keys, config.secrets.clone(), config.validation.clone(), config.max_token_bytes)
                .map_err(|e| e.to_string())
        });
        match keys {
            Ok(v) => {
                let digest: CacheKey = Sha256::digest(answer.body).into();
                if *installed != Some(digest) {
                    // Tokens verified with a key that is gone must be checked again (the new
                    // generation empties every worker's token cache).
                    self.install_keys(v);
                    *installed = Some(digest);
                    host.log(Level::Info, "jitgate: trusted keys updated from the sidecar");
                }
                true
            }
            Err(e) => {
                let kept = if self.has_keys() { "keeping the last good keys" } else { "no keys yet" };
                host.log(Level::Warn, &format!("jitgate: key fetch failed: {e}; {kept}"));
                false
            }
        }
    }

    /// A token named a kid no trusted key has: fetch the keys again soon (rate-limited).
    pub(crate) fn refresh_keys_soon(&self, config: &Config, now_s: u64) {
        if config.sidecar.as_ref().is_some_and(|s| s.jwks_refresh_s.is_some()) {
            let Some(mut sch) = self.schedule() else { return };
            let soon = sch.jwks_last_attempt.saturating_add(JWKS_EARLY_REFRESH_MS).max(now_s.saturating_mul(1000));
            sch.jwks_due = sch.jwks_due.min(soon);
        }
    }
}
