//! Differential: a valid token is built, then changed as the input says (header and claim
//! members, the signature, the bytes); jitgate's verdict is compared with the `jsonwebtoken`
//! crate's, configured as strictly as it allows. A token jitgate accepts and jsonwebtoken
//! refuses is a failure. (jitgate is stricter by design: duplicate members, `typ`, the TTL cap,
//! the `jit` claim, canonical base64, `kid` selection.)
use crate::fixtures::{keys, verifier, AUDIENCE, HS_SECRET, ISSUER};
use arbitrary::Arbitrary;
use jitgate_token::encoding::{b64_decode, b64_encode};
use jitgate_token::mint::sign_compact;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<String>),
}

impl Json {
    fn value(self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::Int(i) => json!(i),
            Json::Float(f) => json!(f),
            Json::Text(s) => json!(s),
            Json::List(l) => json!(l),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    key: u8,
    /// Changes to the JOSE header, then to the claims (names picked from the real ones or free).
    header: Vec<(u8, String, Json)>,
    claims: Vec<(u8, String, Json)>,
    /// Seconds added to iat / exp / nbf.
    shift: (i16, i16, Option<i16>),
    /// Changed after signing: one signature byte, one byte anywhere.
    sig_flip: Option<(u8, u8)>,
    byte_flip: Option<(u16, u8)>,
}

const HEADER_NAMES: [&str; 6] = ["alg", "typ", "kid", "crit", "jwk", "cty"];
const CLAIM_NAMES: [&str; 10] = ["iss", "aud", "sub", "iat", "exp", "nbf", "jti", "scope", "jit", "cnf"];

fn name(pick: u8, free: String, names: &[&str]) -> String {
    names.get(usize::from(pick)).map_or(free, |n| (*n).to_owned())
}

/// One input, as the fuzzer and the corpus replay give it (decoded as cargo fuzz does).
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(arbitrary::Unstructured::new(data)) else { return };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let k = keys();
    let (signer, alg) = match input.key % 3 {
        0 => (&k.es, Algorithm::ES256),
        1 => (&k.ed, Algorithm::EdDSA),
        _ => (&k.hs, Algorithm::HS256),
    };
    let (iat, exp) = (now as i64 + i64::from(input.shift.0), now as i64 + 300 + i64::from(input.shift.1));
    let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": iat, "exp": exp, "jti": "d-1",
        "scope": "orders:read", "jit": {"grant": "g-1"}});
    if let Some(nbf) = input.shift.2 {
        claims["nbf"] = json!(now as i64 + i64::from(nbf));
    }
    let mut header = json!({"alg": signer.alg().name(), "typ": "at+jwt", "kid": signer.kid});
    for (pick, free, v) in input.header {
        header[name(pick, free, &HEADER_NAMES)] = v.value();
    }
    for (pick, free, v) in input.claims {
        claims[name(pick, free, &CLAIM_NAMES)] = v.value();
    }
    let Ok(mut token) = sign_compact(signer, &header, claims.to_string().as_bytes()) else { return };
    if let Some((at, b)) = input.sig_flip {
        if let Some((signed, sig)) = token.rsplit_once('.') {
            let mut raw = b64_decode(sig.as_bytes()).unwrap_or_default();
            let len = raw.len().max(1);
            if let Some(c) = raw.get_mut(usize::from(at) % len) {
                *c ^= b;
            }
            token = format!("{signed}.{}", b64_encode(&raw));
        }
    }
    if let Some((at, b)) = input.byte_flip {
        let mut bytes = token.into_bytes();
        let len = bytes.len();
        if let Some(c) = bytes.get_mut(usize::from(at) % len) {
            *c ^= b;
        }
        let Ok(t) = String::from_utf8(bytes) else { return };
        token = t;
    }
    if verifier().verify(&token, now, None).is_err() {
        return;
    }
    let key = match alg {
        Algorithm::HS256 => DecodingKey::from_secret(&HS_SECRET),
        Algorithm::ES256 => {
            let jwk = signer.public_jwk();
            DecodingKey::from_ec_components(jwk["x"].as_str().unwrap_or(""), jwk["y"].as_str().unwrap_or(""))
                .expect("EC key")
        }
        _ => {
            let jwk = signer.public_jwk();
            DecodingKey::from_ed_components(jwk["x"].as_str().unwrap_or("")).expect("Ed key")
        }
    };
    let mut v = Validation::new(alg);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = 30;
    v.validate_exp = true;
    v.validate_nbf = true;
    if let Err(e) = jsonwebtoken::decode::<Value>(&token, &key, &v) {
        panic!("jitgate accepted a token jsonwebtoken refuses ({e:?}): {token}");
    }
}
