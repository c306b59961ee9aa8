//! JSON Web Tokens as passwords: a CONNECT whose password is a JWT (three base64url parts) is
//! verified against the configured keys — a JWKS file (RSA, EC P-256 and `oct` keys) and/or an
//! HS256 secret file — and names its user in a claim.
//!
//! Only HS256, RS256 and ES256 are accepted, each with its own kind of key: a token cannot pick
//! an algorithm its key was not made for (the classic "RS256 public key used as an HS256 secret"
//! confusion is refused by `jsonwebtoken`, which checks the key's family against the header).
//! `exp` is required, both `exp` and `nbf` are checked with a 30 s leeway for clock skew.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::topic::{covers, Level, Who};

/// Seconds of clock skew allowed on `exp` and `nbf`.
pub const JWT_LEEWAY_SECS: u64 = 30;

/// The keys a token may be signed with, read from the configured files.
pub struct JwtKeys {
    /// (key id from the JWKS, algorithm, key); the secret file's key has no id.
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for JwtKeys {
    // Keys are secrets (HS256) or at least not log material: only their count is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys").field("keys", &self.keys.len()).finish()
    }
}

/// The `result` label values of `shardmq_auth_jwt_total`, in its order: `ok`, then each
/// [`JwtRefusal::label`].
pub const RESULTS: [&str; 5] = ["ok", "expired", "not_yet_valid", "bad_signature", "invalid"];

/// Why a token was refused; the `result` label of `shardmq_auth_jwt_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRefusal {
    /// Expired (past `exp` plus the leeway), or without `exp`.
    Expired,
    /// Before its `nbf`.
    NotYetValid,
    /// No key fits it, or its signature does not verify.
    BadSignature,
    /// Not a token we can read, or without the user-name claim, or naming another user than the
    /// CONNECT's User Name.
    Invalid,
}

impl JwtRefusal {
    pub fn label(self) -> &'static str {
        match self {
            JwtRefusal::Expired => "expired",
            JwtRefusal::NotYetValid => "not_yet_valid",
            JwtRefusal::BadSignature => "bad_signature",
            JwtRefusal::Invalid => "invalid",
        }
    }
}

/// A verified token: the user it names and its claims (for the topic claim).
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    pub username: String,
    pub claims: Value,
}

/// Whether `password` has the shape of a JWT: three non-empty base64url parts. Cheap, so the
/// broker only tries to verify what could be a token and leaves other passwords to the other
/// checks.
pub fn looks_like_jwt(password: &[u8]) -> bool {
    let parts: Vec<&[u8]> = password.split(|&byte| byte == b'.').collect();
    parts.len() == 3
        && parts.iter().all(|part| {
            !part.is_empty()
                && part.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl JwtKeys {
    /// Reads the JWKS file and/or the HS256 secret file (the secret is the file's bytes, one
    /// trailing newline removed). An error is one line naming the file.
    pub fn load(jwks: Option<&Path>, secret: Option<&Path>) -> Result<JwtKeys, String> {
        let mut keys = Vec::new();
        if let Some(path) = jwks {
            let text = std::fs::read_to_string(path).map_err(|error| {
                format!("cannot read jwt_jwks_file {}: {error}", path.display())
            })?;
            keys = parse_jwks(&text)
                .map_err(|error| format!("cannot use jwt_jwks_file {}: {error}", path.display()))?;
        }
        if let Some(path) = secret {
            let bytes = std::fs::read(path).map_err(|error| {
                format!("cannot read jwt_secret_file {}: {error}", path.display())
            })?;
            let secret = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
            if secret.is_empty() {
                return Err(format!("jwt_secret_file {} is empty", path.display()));
            }
            keys.push((None, Algorithm::HS256, DecodingKey::from_secret(secret)));
        }
        Ok(JwtKeys { keys })
    }

    /// Verifies `token` and reads its user from `username_claim` (a string claim).
    pub fn verify(&self, token: &str, username_claim: &str) -> Result<VerifiedJwt, JwtRefusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRefusal::Invalid)?;
        if !matches!(header.alg, Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256) {
            return Err(JwtRefusal::Invalid);
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = JWT_LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        let candidates = self.keys.iter().filter(|(kid, alg, _)| {
            *alg == header.alg
                && match (&header.kid, kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    _ => true,
                }
        });
        let mut refusal = JwtRefusal::BadSignature;
        for (_, _, key) in candidates {
            match jsonwebtoken::decode::<Value>(token, key, &validation) {
                Ok(data) => return verified(data.claims, username_claim),
                Err(error) => refusal = refusal_of(&error),
            }
            if refusal != JwtRefusal::BadSignature {
                // The signature held but a claim did not: another key will not change that.
                break;
            }
        }
        Err(refusal)
    }
}

fn verified(claims: Value, username_claim: &str) -> Result<VerifiedJwt, JwtRefusal> {
    let username = claims.get(username_claim).and_then(Value::as_str).ok_or(JwtRefusal::Invalid)?;
    Ok(VerifiedJwt { username: username.to_owned(), claims })
}

fn refusal_of(error: &jsonwebtoken::errors::Error) -> JwtRefusal {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => JwtRefusal::Expired,
        ErrorKind::MissingRequiredClaim(_) => JwtRefusal::Expired,
        ErrorKind::ImmatureSignature => JwtRefusal::NotYetValid,
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => JwtRefusal::BadSignature,
        _ => JwtRefusal::Invalid,
    }
}

/// The keys of a JWKS document: RSA keys for RS256, EC P-256 keys for ES256, `oct` keys for
/// HS256. A key with another algorithm or curve is an error (not skipped silently: an operator
/// who meant it to work must hear it does not).
fn parse_jwks(text: &str) -> Result<Vec<(Option<String>, Algorithm, DecodingKey)>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|error| error.to_string())?;
    let mut keys = Vec::new();
    for (index, jwk) in set.keys.iter().enumerate() {
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec)
                if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
            _ => return Err(format!("key {index}: only RSA, EC P-256 and oct keys are supported")),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|error| format!("key {index}: {error}"))?;
        keys.push((jwk.common.key_id.clone(), algorithm, key));
    }
    Ok(keys)
}

/// The topics a token's `acl_claim` allows: `{"pub": [filters], "sub": [filters]}`. `None`
/// when the token has no such claim (the ACL file alone applies); a claim that is not that
/// shape, or a filter that is not valid, allows nothing (fail closed).
pub fn topic_claim(claims: &Value, acl_claim: &str) -> Option<TopicClaim> {
    let claim = claims.get(acl_claim)?;
    let list = |name: &str| -> Vec<Box<[Level]>> {
        let Some(items) = claim.get(name).and_then(Value::as_array) else { return Vec::new() };
        items
            .iter()
            .filter_map(Value::as_str)
            .filter(|filter| crate::topic::valid_filter(filter))
            .filter_map(|filter| crate::topic::parse_entry(filter, false).ok())
            .collect()
    };
    Some(TopicClaim { publish: list("pub"), subscribe: list("sub") })
}

/// The topic filters a token allows for publishing and for subscribing, split into levels once
/// at login so a check allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicClaim {
    publish: Vec<Box<[Level]>>,
    subscribe: Vec<Box<[Level]>>,
}

/// The claim names no user or client: `%u`/`%c` are not substituted in it.
const NOBODY: Who<'static> = Who { username: None, client_id: "" };

impl TopicClaim {
    /// May the client publish on `topic`: a `pub` filter matches it.
    pub fn can_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|entry| covers(entry, topic, &NOBODY))
    }

    /// May the client subscribe to `filter`: a `sub` filter covers every topic it matches.
    pub fn can_subscribe(&self, filter: &str) -> bool {
        self.subscribe.iter().any(|entry| covers(entry, filter, &NOBODY))
    }

    /// May the client receive a message on `topic`: a `sub` filter matches it.
    pub fn can_read(&self, topic: &str) -> bool {
        self.subscribe.iter().any(|entry| covers(entry, topic, &NOBODY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_is_three_base64url_parts() {
        assert!(looks_like_jwt(b"eyJh.eyJz.c2ln"));
        assert!(!looks_like_jwt(b"secret"));
        assert!(!looks_like_jwt(b"a.b"));
        assert!(!looks_like_jwt(b"a..c"));
        assert!(!looks_like_jwt(b"a.b.c d"));
    }

    #[test]
    fn the_topic_claim_allows_only_its_filters() {
        let claims: Value =
            serde_json::from_str(r#"{"acl": {"pub": ["a/#"], "sub": ["b/+"]}}"#).unwrap();
        let claim = topic_claim(&claims, "acl").expect("a claim");
        assert!(claim.can_publish("a/x/y") && !claim.can_publish("b/x"));
        assert!(claim.can_subscribe("b/x") && !claim.can_subscribe("b/#"));
        assert!(claim.can_read("b/x") && !claim.can_read("a/x"));
        assert_eq!(topic_claim(&claims, "other"), None);
        let odd: Value = serde_json::from_str(r#"{"acl": "everything"}"#).unwrap();
        assert_eq!(topic_claim(&odd, "acl"), Some(TopicClaim::default()));
        assert!(!TopicClaim::default().can_publish("a"));
    }

    #[test]
    fn a_bad_jwks_is_refused_with_the_key_named() {
        let error = parse_jwks(r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]}"#);
        assert!(error.is_err());
        assert!(parse_jwks("not json").is_err());
        let oct = parse_jwks(r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]}"#);
        assert_eq!(oct.expect("an oct key")[0].0.as_deref(), Some("k1"));
    }
}
