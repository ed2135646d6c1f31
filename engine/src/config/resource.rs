//! Protected resource metadata (RFC 9728): with a `resource_metadata` block the filter answers
//! `GET /.well-known/oauth-protected-resource` itself, and one document per protected rule below
//! it (the rule's path after the well-known one, as RFC 9728 §3.1 places a resource with a path),
//! and its challenges name their rule's document (`resource_metadata="…"`, §5.1), so a client
//! that knows only the API's URL finds where to get a token and whether it must be DPoP-bound.
//! Every document is built here, once; answering one copies a prepared string.

use super::error::{check_len, err, ConfigError};
use crate::rules::{PathMatch, Replay, Rule};
use serde::Deserialize;
use serde_json::json;

/// The well-known path (RFC 9728 §3).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";
const MAX_SERVERS: usize = 8;
const MAX_URL_BYTES: usize = 512;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResourceMetadata {
    /// The protected resource's identifier: the API's public URL (https; http only on loopback).
    resource: String,
    /// Issuer URLs of the authorization servers whose tokens this API takes (RFC 8414 metadata
    /// at each: jitgate-sidecar serves it).
    authorization_servers: Vec<String>,
    #[serde(default)]
    resource_name: Option<String>,
    /// A page for developers of clients.
    #[serde(default)]
    resource_documentation: Option<String>,
}

/// One metadata document: the path it is served at and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub path: String,
    pub body: String,
}

/// The documents, and the URL of the one for requests no rule (or no protected rule) matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMetadata {
    pub documents: Vec<Document>,
    pub root_url: String,
}

impl ResourceMetadata {
    /// The document `GET <path>` asks for, if it is one.
    pub fn document(&self, method: &str, path: &str) -> Option<&Document> {
        if method != "GET" || !path.starts_with(WELL_KNOWN) {
            return None;
        }
        self.documents.iter().find(|d| d.path == path)
    }
}

/// The parts of an absolute URL this configuration may name: origin, host, path.
struct Url<'u> {
    origin: &'u str,
    host: &'u str,
    path: &'u str,
}

fn parse_url<'u>(field: &str, url: &'u str) -> Result<Url<'u>, ConfigError> {
    check_len(field, url, MAX_URL_BYTES)?;
    let bad = || err(field, "an https URL (http only to 127.0.0.1 or localhost), no query, fragment or user");
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(bad)?;
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(authority, |(h, _)| h),
        None => authority.split_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "::1");
    let safe = url.bytes().all(|b| b.is_ascii_graphic() && !b"\"\\<>`{}|^".contains(&b));
    if authority.is_empty() || url.contains(['?', '#', '@']) || !safe || (url.starts_with("http://") && !loopback) {
        return Err(bad());
    }
    let origin = url.get(..url.len() - path.len()).ok_or_else(bad)?;
    Ok(Url { origin, host, path: path.trim_end_matches('/') })
}

/// What one document says of the rules it describes.
fn body(raw: &RawResourceMetadata, resource: &str, rules: &[&Rule]) -> String {
    let mut scopes: Vec<&str> = rules.iter().flat_map(|r| r.scopes.iter().map(String::as_str)).collect();
    scopes.sort_unstable();
    scopes.dedup();
    let mut doc = json!({
        "resource": resource,
        "authorization_servers": raw.authorization_servers,
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": jitgate_token::dpop::PROOF_ALGS.split(' ').collect::<Vec<_>>(),
        "dpop_bound_access_tokens_required": !rules.is_empty() && rules.iter().all(|r| r.replay == Replay::Dpop),
    });
    if let Some(obj) = doc.as_object_mut() {
        if let Some(n) = &raw.resource_name {
            obj.insert("resource_name".into(), n.clone().into());
        }
        if let Some(d) = &raw.resource_documentation {
            obj.insert("resource_documentation".into(), d.clone().into());
        }
    }
    doc.to_string()
}

impl RawResourceMetadata {
    /// The documents for `rules`, each protected rule given the URL of its own.
    pub(super) fn compile(self, rules: &mut [Rule]) -> Result<ResourceMetadata, ConfigError> {
        let Url { origin, host, path: base } = parse_url("resource_metadata.resource", &self.resource)?;
        if self.authorization_servers.is_empty() || self.authorization_servers.len() > MAX_SERVERS {
            return Err(err("resource_metadata.authorization_servers", format!("1 to {MAX_SERVERS} issuer URLs")));
        }
        for (i, s) in self.authorization_servers.iter().enumerate() {
            parse_url(&format!("resource_metadata.authorization_servers[{i}]"), s)?;
        }
        if let Some(d) = &self.resource_documentation {
            parse_url("resource_metadata.resource_documentation", d)?;
        }
        if let Some(n) = &self.resource_name {
            check_len("resource_metadata.resource_name", n, 128)?;
        }
        // The documents name one origin: a rule for another host would be described wrongly.
        if let Some((i, _)) = rules
            .iter()
            .enumerate()
            .find(|(_, r)| !r.public && r.host.as_deref().is_some_and(|h| !h.eq_ignore_ascii_case(host)))
        {
            return Err(err(
                format!("rules[{i}].host"),
                "resource_metadata describes the resource's host only; give the rules of another host their own \
                 configuration",
            ));
        }
        // A rule's resource is the API's origin and the rule's path; rules on one path share it.
        let mut by_path: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, r) in rules.iter_mut().enumerate().filter(|(_, r)| !r.public) {
            let own = match &r.path {
                PathMatch::Exact(p) | PathMatch::Prefix(p) => p.trim_end_matches('/').to_owned(),
            };
            r.resource_metadata = Some(format!("{origin}{WELL_KNOWN}{own}"));
            match by_path.iter_mut().find(|(p, _)| *p == own) {
                Some((_, members)) => members.push(i),
                None => by_path.push((own, vec![i])),
            }
        }
        let protected: Vec<&Rule> = rules.iter().filter(|r| !r.public).collect();
        let mut documents =
            vec![Document { path: format!("{WELL_KNOWN}{base}"), body: body(&self, &self.resource, &protected) }];
        // A rule on the resource's own path is described by the resource's document.
        for (own, members) in by_path.iter().filter(|(own, _)| *own != base) {
            let on_path: Vec<&Rule> = members.iter().filter_map(|&i| rules.get(i)).collect();
            documents.push(Document {
                path: format!("{WELL_KNOWN}{own}"),
                body: body(&self, &format!("{origin}{own}"), &on_path),
            });
        }
        Ok(ResourceMetadata { documents, root_url: format!("{origin}{WELL_KNOWN}{base}") })
    }
}
