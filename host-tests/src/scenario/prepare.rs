//! A scenario made concrete for one host at one time: the plugin configuration with its keys, the
//! tokens and DPoP proofs minted from their templates, and each case's request headers.

use super::format::{Case, Headers, ProofSpec, Scenario, TokenSpec};
use crate::abi::Pairs;
use anyhow::{anyhow, Context as _, Result};
use jitgate_token::encoding::b64_encode;
use jitgate_token::mint::{sign_compact, SigningKey};
use jitgate_token::Alg;
use regex::Regex;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What minting needs besides the specs: time, a serial for `$unique`, the case's request, the
/// tokens minted so far, and the host's last DPoP nonce.
struct MintCx<'a> {
    now: u64,
    serial: &'a mut u64,
    method: &'a str,
    path: &'a str,
    dpop_nonce: Option<&'a str>,
}

impl Scenario {
    fn key(&self, name: &str) -> Result<SigningKey> {
        let alg = self.keys.get(name).ok_or_else(|| anyhow!("unknown key `{name}`"))?;
        let alg = Alg::parse(alg).map_err(|_| anyhow!("key `{name}`: unsupported alg {alg}"))?;
        let seed: [u8; 32] = Sha256::digest(format!("jitgate-harness/{}/{name}", self.name)).into();
        SigningKey::from_seed(alg, Some(name), &seed).map_err(|e| anyhow!("key `{name}`: {e}"))
    }

    /// The plugin configuration with `$jwks` expanded, as JSON text.
    pub fn plugin_config(&self) -> Result<String> {
        fn expand(s: &Scenario, v: &Value) -> Result<Value> {
            Ok(match v {
                Value::Object(m) if m.len() == 1 && m.contains_key("$jwks") => {
                    let names =
                        m.get("$jwks").and_then(Value::as_array).ok_or_else(|| anyhow!("$jwks takes a list"))?;
                    let keys = names
                        .iter()
                        .map(|n| s.key(n.as_str().unwrap_or_default()).map(|k| k.public_jwk()))
                        .collect::<Result<Vec<_>>>()?;
                    json!({ "keys": keys })
                }
                Value::Object(m) => {
                    Value::Object(m.iter().map(|(k, v)| Ok((k.clone(), expand(s, v)?))).collect::<Result<_>>()?)
                }
                Value::Array(a) => Value::Array(a.iter().map(|v| expand(s, v)).collect::<Result<_>>()?),
                other => other.clone(),
            })
        }
        Ok(expand(self, &self.config)?.to_string())
    }

    fn default_key(&self) -> Result<&String> {
        self.keys.keys().next().ok_or_else(|| anyhow!("the scenario defines no keys"))
    }

    /// Builds a token at `now` (Unix seconds); `serial` makes `$unique` values distinct.
    fn token(&self, spec: &TokenSpec, now: u64, serial: &mut u64) -> Result<String> {
        if let Some(l) = &spec.literal {
            return Ok(expand_repeat(l));
        }
        let mut claims = self.claims.clone();
        merge(&mut claims, &spec.claims);
        if let Some(k) = &spec.bind {
            let jkt = jitgate_token::mint::jkt(&self.key(k)?).map_err(|e| anyhow!("{e}"))?;
            claims.insert("cnf".into(), json!({ "jkt": jkt }));
        }
        let claims = resolve(Value::Object(claims), now, serial)?;
        let key =
            self.key(spec.key.as_ref().map_or_else(|| self.default_key().cloned(), |k| Ok(k.clone()))?.as_str())?;
        let mut header = json!({"alg": key.alg().name(), "typ": spec.typ.clone().unwrap_or_else(|| "at+jwt".into()), "kid": key.kid});
        if let Some(of) = &spec.hmac_with_public_key_of {
            let public = self.key(of)?.public_jwk().to_string();
            let confused = SigningKey::hs256(Some(of), public.as_bytes());
            header = json!({"alg": "HS256", "typ": "at+jwt", "kid": of});
            return sign_compact(&confused, &header, claims.to_string().as_bytes()).map_err(|e| anyhow!("{e}"));
        }
        if let Some(obj) = header.as_object_mut() {
            for (k, v) in &spec.header {
                obj.insert(k.clone(), v.clone());
            }
        }
        if spec.unsigned {
            let sig = spec.signature.as_deref().unwrap_or_default();
            return Ok(format!(
                "{}.{}.{sig}",
                b64_encode(header.to_string().as_bytes()),
                b64_encode(claims.to_string().as_bytes())
            ));
        }
        let token = sign_compact(&key, &header, claims.to_string().as_bytes()).map_err(|e| anyhow!("{e}"))?;
        let token = match &spec.signature {
            Some(sig) => format!("{}.{sig}", token.rsplit_once('.').map_or("", |(signed, _)| signed)),
            None => token,
        };
        match &spec.tamper {
            None => Ok(token),
            Some(changes) => {
                let mut c = claims.as_object().cloned().unwrap_or_default();
                merge(&mut c, changes);
                let c = resolve(Value::Object(c), now, serial)?;
                let mut parts = token.split('.');
                let (h, _, s) = (parts.next().unwrap_or_default(), parts.next(), parts.next().unwrap_or_default());
                Ok(format!("{h}.{}.{s}", b64_encode(c.to_string().as_bytes())))
            }
        }
    }

    /// A DPoP proof per `p`, bound to the already minted `tokens`.
    fn proof(&self, p: &ProofSpec, tokens: &BTreeMap<String, String>, cx: &mut MintCx<'_>) -> Result<String> {
        let key = self.key(&p.key)?;
        let htu = format!("http://api.jitgate.test{}", cx.path.split('?').next().unwrap_or_default());
        let mut claims = Map::new();
        claims.insert("jti".into(), json!("$unique"));
        claims.insert("iat".into(), json!("+0s"));
        claims.insert("htm".into(), json!(cx.method));
        claims.insert("htu".into(), json!(htu));
        if let Some(name) = &p.for_token {
            let token = tokens.get(name).ok_or_else(|| anyhow!("proof for unknown token `{name}`"))?;
            claims.insert("ath".into(), json!(b64_encode(&Sha256::digest(token.as_bytes()))));
        }
        merge(&mut claims, &p.claims);
        let mut claims = resolve(Value::Object(claims), cx.now, cx.serial)?;
        if let Some(n) = claims.get_mut("nonce").filter(|n| *n == "$dpop_nonce") {
            *n = json!(cx.dpop_nonce.ok_or_else(|| anyhow!("$dpop_nonce: the host has sent no DPoP-Nonce yet"))?);
        }
        let mut jwk = if p.private_jwk { key.private_jwk().map_err(|e| anyhow!("{e}"))? } else { key.public_jwk() };
        if let Some(obj) = jwk.as_object_mut() {
            for member in ["kid", "alg", "use"] {
                obj.remove(member);
            }
        }
        let mut header = json!({"typ": "dpop+jwt", "alg": key.alg().name(), "jwk": jwk});
        if let Some(obj) = header.as_object_mut() {
            merge(obj, &p.header);
        }
        sign_compact(&key, &header, claims.to_string().as_bytes()).map_err(|e| anyhow!("{e}"))
    }

    /// Mints `specs` over `base`: access tokens first, then proofs (which refer to them).
    fn mint_all(
        &self,
        specs: &BTreeMap<String, TokenSpec>,
        base: &BTreeMap<String, String>,
        cx: &mut MintCx<'_>,
    ) -> Result<BTreeMap<String, String>> {
        let mut tokens = base.clone();
        for (name, spec) in specs.iter().filter(|(_, s)| s.proof.is_none()) {
            let t = self.token(spec, cx.now, cx.serial).with_context(|| format!("token `{name}`"))?;
            tokens.insert(name.clone(), t);
        }
        for (name, p) in specs.iter().filter_map(|(n, s)| s.proof.as_ref().map(|p| (n, p))) {
            let t = self.proof(p, &tokens, cx).with_context(|| format!("proof `{name}`"))?;
            tokens.insert(name.clone(), t);
        }
        Ok(tokens)
    }

    /// Mints the scenario-level tokens at `now` (proofs among them default to `GET /`).
    pub(crate) fn scenario_tokens(&self, now: u64, serial: &mut u64) -> Result<BTreeMap<String, String>> {
        let mut cx = MintCx { now, serial, method: "GET", path: "/", dpop_nonce: None };
        self.mint_all(&self.tokens, &BTreeMap::new(), &mut cx)
    }

    /// The concrete request of a case at `now`, and the tokens it carries (the scenario's
    /// `minted` tokens, then the case's own).
    pub(crate) fn request(
        &self,
        case: &Case,
        minted: &BTreeMap<String, String>,
        now: u64,
        serial: &mut u64,
        dpop_nonce: Option<&str>,
    ) -> Result<(Pairs, BTreeMap<String, String>)> {
        let r = &case.request;
        let mut cx = MintCx { now, serial, method: &r.method, path: &r.path, dpop_nonce };
        let tokens = self.mint_all(&case.tokens, minted, &mut cx)?;
        let fill = |v: &str| -> String {
            let mut out = v.to_owned();
            for (name, t) in &tokens {
                out = out.replace(&format!("{{{name}}}"), t);
            }
            out
        };
        let mut headers: Pairs = vec![
            (":method".into(), case.request.method.clone().into_bytes()),
            (":path".into(), case.request.path.clone().into_bytes()),
            (":authority".into(), b"api.jitgate.test".to_vec()),
            (":scheme".into(), b"http".to_vec()),
        ];
        let extra: Vec<(String, String)> = match &case.request.headers {
            Headers::None => Vec::new(),
            Headers::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Headers::List(l) => l.clone(),
        };
        headers.extend(extra.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), fill(&v).into_bytes())));
        if !headers.iter().any(|(k, _)| k == "x-request-id") {
            headers.push(("x-request-id".into(), request_id(&self.name, &case.name).into_bytes()));
        }
        Ok((headers, tokens))
    }
}

/// `{9000*e}` becomes 9000 `e`s; other text is kept.
fn expand_repeat(s: &str) -> String {
    let re = Regex::new(r"\{(\d{1,6})\*(.)\}").ok();
    match re {
        Some(re) => re.replace_all(s, |c: &regex::Captures<'_>| c[2].repeat(c[1].parse().unwrap_or(0))).into_owned(),
        None => s.to_owned(),
    }
}

fn request_id(scenario: &str, case: &str) -> String {
    let h = Sha256::digest(format!("{scenario}/{case}"));
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn merge(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (k, v) in over {
        if v.is_null() {
            base.remove(k);
        } else {
            base.insert(k.clone(), v.clone());
        }
    }
}

fn is_relative_time(s: &str) -> bool {
    let digits = s.get(1..s.len().saturating_sub(1)).unwrap_or_default();
    (s.starts_with('+') || s.starts_with('-'))
        && s.ends_with('s')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `+300s` / `-60s` become `now` plus the offset; `$unique` becomes a fresh id.
fn resolve(v: Value, now: u64, serial: &mut u64) -> Result<Value> {
    Ok(match v {
        Value::String(s) if s == "$unique" => {
            *serial += 1;
            Value::String(format!("jti-{now}-{serial}"))
        }
        // Exactly `[+-]<digits>s`: anything else (a base64url value may start with `-`) stays text.
        Value::String(s) if is_relative_time(&s) => {
            let n: i64 =
                s.get(1..s.len() - 1).and_then(|n| n.parse().ok()).ok_or_else(|| anyhow!("bad relative time {s}"))?;
            let t = if s.starts_with('+') { now as i64 + n } else { now as i64 - n };
            json!(t)
        }
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| Ok((k, resolve(v, now, serial)?))).collect::<Result<_>>()?)
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_and_unique_ids_resolve() {
        let mut serial = 0;
        let v = resolve(
            json!({"iat": "+0s", "exp": "+300s", "nbf": "-60s", "jti": "$unique", "sub": "+x"}),
            1000,
            &mut serial,
        );
        assert_eq!(v.ok(), Some(json!({"iat": 1000, "exp": 1300, "nbf": 940, "jti": "jti-1000-1", "sub": "+x"})));
        let text = json!({"ath": "-CEBwK1BzpIMm-9YVqBC8QnLPsAvXPolZ8FODL4Vors", "x": "+tens", "y": "-s"});
        assert_eq!(resolve(text.clone(), 1000, &mut serial).ok(), Some(text), "only [+-]<digits>s is a relative time");
        assert_eq!(expand_repeat("a{3*e}b"), "aeeeb");
    }
}
