//! SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), the server's side, sans-IO: the exchange is two
//! pure steps over the client's messages, so MQTT's CONNECT/AUTH packets (or any other carrier)
//! drive it and tests replay the RFC's vector byte for byte.
//!
//! ```text
//! client-first  n,,n=user,r=<client nonce>             → server_first()
//! server-first  r=<client+server nonce>,s=<salt>,i=<iterations>
//! client-final  c=biws,r=<client+server nonce>,p=<proof> → ServerFirst::finish()
//! server-final  v=<server signature>
//! ```
//!
//! The server stores no password, only a [`ScramVerifier`] (salt, iterations, StoredKey,
//! ServerKey), so a leaked password file does not let anyone log in without cracking it.
//!
//! No channel binding is offered: `p=` in the gs2 header is refused, `n` and `y` are accepted (we
//! advertise no `-PLUS` mechanism, so `y` is not a downgrade). An authorization identity (`a=`)
//! is accepted only when it names the authenticated user. Passwords are hashed as their UTF-8
//! bytes without SASLprep, which changes nothing for ASCII passwords.
//!
//! **Invariant:** an unknown user (or one whose entry is not a SCRAM verifier) is refused at the
//! proof, after the same steps and the same work as a known user with a wrong password, and gets a
//! salt and iteration count that stay the same across attempts: neither the step where it fails
//! nor its timing nor the server-first message tells whether the user exists.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::password::BASE64_LENIENT;

/// The MQTT Authentication Method naming this mechanism.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// RFC 7677: the iteration count SHOULD be at least 4096; fewer are refused when read.
pub const ITERATIONS_MIN: u32 = 4096;
/// What `shardmq passwd --scram` writes. The client pays the iterations on every connect (or
/// caches its salted password); the broker pays them only for a plain-password CONNECT against
/// the entry. 10,000 is well past RFC 7677's minimum while still tens of milliseconds on a small
/// device, not seconds.
pub const ITERATIONS_DEFAULT: u32 = 10_000;
/// Length of a fresh salt.
pub const SALT_BYTES: usize = 16;
/// Random bytes in a server nonce (24 base64 characters).
const SERVER_NONCE_BYTES: usize = 18;

const KEY_BYTES: usize = 32;
type Key = [u8; KEY_BYTES];

type HmacSha256 = Hmac<Sha256>;

/// What the server keeps of a SCRAM-SHA-256 password (RFC 5802 §3).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Box<[u8]>,
    stored_key: Key,
    server_key: Key,
}

impl ScramVerifier {
    /// Derives the verifier of `password` (PBKDF2-HMAC-SHA-256 over `salt`, `iterations` times).
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> ScramVerifier {
        let salted = salted_password(password, salt, iterations);
        ScramVerifier {
            iterations,
            salt: salt.into(),
            stored_key: sha256(&hmac(&salted, b"Client Key")),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// The hash part of a password-file line:
    /// `$scram-sha-256$<iterations>$<salt>$<StoredKey>$<ServerKey>`, base64 with padding.
    pub fn to_hash_string(&self) -> String {
        format!(
            "$scram-sha-256${}${}${}${}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }

    /// Parses what follows `$scram-sha-256$`. Errors never quote the text.
    pub(crate) fn parse(rest: &str) -> Result<ScramVerifier, String> {
        let mut parts = rest.split('$');
        let (Some(iterations), Some(salt), Some(stored_key), Some(server_key), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("a `$scram-sha-256$` hash must be \
                        `$scram-sha-256$iterations$salt$StoredKey$ServerKey`"
                .to_owned());
        };
        let iterations = match iterations.parse::<u32>() {
            Ok(iterations) if iterations >= ITERATIONS_MIN => iterations,
            _ => {
                return Err(format!(
                    "the `$scram-sha-256$` iteration count must be a number from {ITERATIONS_MIN}"
                ))
            }
        };
        let salt = match BASE64_LENIENT.decode(salt) {
            Ok(salt) if !salt.is_empty() => salt.into_boxed_slice(),
            _ => return Err("the salt is not base64".to_owned()),
        };
        let key = |text: &str, name: &str| {
            BASE64_LENIENT
                .decode(text)
                .ok()
                .and_then(|key| Key::try_from(key).ok())
                .ok_or_else(|| format!("the {name} is not {KEY_BYTES} bytes of base64"))
        };
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: key(stored_key, "StoredKey")?,
            server_key: key(server_key, "ServerKey")?,
        })
    }

    /// Whether `password` derives this verifier's StoredKey (a plain-password CONNECT against a
    /// SCRAM entry). Slow on purpose: PBKDF2 with the entry's iterations. Constant-time compare.
    pub(crate) fn verify_password(&self, password: &[u8]) -> bool {
        let salted = salted_password(password, &self.salt, self.iterations);
        sha256(&hmac(&salted, b"Client Key")).ct_eq(&self.stored_key).into()
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }
}

/// Keys stay out of logs.
impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// The verifier an exchange runs against: a user's own, or a stand-in for a user who has none,
/// which runs the same steps and fails at the proof.
#[derive(Clone, Debug)]
pub struct ScramCredentials {
    verifier: ScramVerifier,
    known: bool,
}

impl ScramCredentials {
    /// A user's verifier.
    pub fn known(verifier: ScramVerifier) -> ScramCredentials {
        ScramCredentials { verifier, known: true }
    }

    /// A stand-in for `username`, who has no SCRAM verifier: its salt is derived from `secret`
    /// (random per server, kept across attempts) and the user name, so asking twice gives the
    /// same server-first message, as for a real user.
    pub fn unknown(username: &str, secret: &[u8; 32], iterations: u32) -> ScramCredentials {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"shardmq scram salt\0");
        mac.update(username.as_bytes());
        let salt = &mac.finalize().into_bytes()[..SALT_BYTES];
        ScramCredentials {
            verifier: ScramVerifier {
                iterations,
                salt: salt.into(),
                stored_key: [0; KEY_BYTES],
                server_key: [0; KEY_BYTES],
            },
            known: false,
        }
    }
}

/// Why an exchange failed. [`ScramError::Failed`] covers both a wrong proof and a user without a
/// verifier, so the two cannot be told apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding requested, but none is offered")]
    ChannelBindingUnsupported,
    #[error("the authorization identity differs from the user name")]
    AuthorizationIdentity,
    #[error("the channel binding in the final message differs from the first")]
    ChannelBindingMismatch,
    #[error("the nonce in the final message is not the server's")]
    NonceMismatch,
    #[error("authentication failed")]
    Failed,
}

/// A fresh server nonce: 18 bytes from the OS's random source, base64 (printable, no `,`).
///
/// # Panics
///
/// If the OS random source fails.
pub fn random_nonce() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore as _};
    let mut bytes = [0u8; SERVER_NONCE_BYTES];
    OsRng.fill_bytes(&mut bytes);
    STANDARD.encode(bytes)
}

/// A fresh random salt for a new verifier.
pub fn random_salt() -> [u8; SALT_BYTES] {
    use argon2::password_hash::rand_core::{OsRng, RngCore as _};
    let mut salt = [0u8; SALT_BYTES];
    OsRng.fill_bytes(&mut salt);
    salt
}

/// An exchange that has answered the client-first message; [`ServerFirst::finish`] takes the
/// client-final one.
#[derive(Clone)]
pub struct ServerFirst {
    username: Box<str>,
    gs2_header: Box<str>,
    client_first_bare: Box<str>,
    message: Box<str>,
    nonce: Box<str>,
    credentials: ScramCredentials,
}

/// A successful exchange: who the client is and the server-final message proving the server
/// knew the verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramSuccess {
    pub username: Box<str>,
    pub server_final: Vec<u8>,
}

/// Parses the client-first message and answers it. `credentials` is asked once, with the user
/// name from `n=` (unescaped); `server_nonce` must be printable ASCII without `,` (use
/// [`random_nonce`]).
pub fn server_first(
    client_first: &[u8],
    credentials: impl FnOnce(&str) -> ScramCredentials,
    server_nonce: &str,
) -> Result<ServerFirst, ScramError> {
    assert!(
        !server_nonce.is_empty() && server_nonce.bytes().all(is_printable),
        "a server nonce must be printable ASCII without `,`"
    );
    let text = std::str::from_utf8(client_first)
        .map_err(|_| ScramError::Malformed("client-first is not UTF-8"))?;
    let (cbind_flag, rest) =
        text.split_once(',').ok_or(ScramError::Malformed("client-first has no gs2 header"))?;
    match cbind_flag {
        "n" | "y" => {}
        flag if flag.starts_with("p=") => return Err(ScramError::ChannelBindingUnsupported),
        _ => return Err(ScramError::Malformed("unknown gs2 channel-binding flag")),
    }
    let (authzid, bare) =
        rest.split_once(',').ok_or(ScramError::Malformed("client-first has no gs2 header"))?;
    let authzid = match authzid {
        "" => None,
        authzid => Some(
            decode_saslname(
                authzid.strip_prefix("a=").ok_or(ScramError::Malformed("bad authzid"))?,
            )
            .ok_or(ScramError::Malformed("bad authzid"))?,
        ),
    };
    let gs2_header = &text[..text.len() - bare.len()];

    let mut attributes = bare.split(',');
    let username = match attributes.next() {
        Some(first) if first.starts_with("m=") => {
            // RFC 5802: a mandatory extension the server does not know fails the exchange.
            return Err(ScramError::Malformed("unsupported mandatory extension"));
        }
        Some(first) => first.strip_prefix("n=").and_then(decode_saslname),
        None => None,
    }
    .filter(|username| !username.is_empty())
    .ok_or(ScramError::Malformed("client-first has no user name"))?;
    let client_nonce = attributes
        .next()
        .and_then(|nonce| nonce.strip_prefix("r="))
        .filter(|nonce| !nonce.is_empty() && nonce.bytes().all(is_printable))
        .ok_or(ScramError::Malformed("client-first has no nonce"))?;
    // Optional extensions may follow; they are ignored, as the RFC allows.
    if authzid.as_deref().is_some_and(|authzid| authzid != username) {
        return Err(ScramError::AuthorizationIdentity);
    }

    let credentials = credentials(&username);
    let nonce = format!("{client_nonce}{server_nonce}");
    let message = format!(
        "r={nonce},s={},i={}",
        STANDARD.encode(&credentials.verifier.salt),
        credentials.verifier.iterations
    );
    Ok(ServerFirst {
        username: username.into(),
        gs2_header: gs2_header.into(),
        client_first_bare: bare.into(),
        message: message.into(),
        nonce: nonce.into(),
        credentials,
    })
}

impl ServerFirst {
    /// The server-first message to send.
    pub fn message(&self) -> &[u8] {
        self.message.as_bytes()
    }

    /// The user name the client gave (`n=`, unescaped); not yet authenticated.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Checks the client-final message: the channel binding repeats the gs2 header, the nonce is
    /// the combined one, and the proof is the password's. The proof is checked in constant time,
    /// and for a stand-in verifier exactly as for a real one.
    pub fn finish(self, client_final: &[u8]) -> Result<ScramSuccess, ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("client-final is not UTF-8"))?;
        let (without_proof, proof) =
            text.rsplit_once(",p=").ok_or(ScramError::Malformed("client-final has no proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|binding| binding.strip_prefix("c="))
            .ok_or(ScramError::Malformed("client-final has no channel binding"))?;
        let nonce = attributes
            .next()
            .and_then(|nonce| nonce.strip_prefix("r="))
            .ok_or(ScramError::Malformed("client-final has no nonce"))?;
        let proof =
            STANDARD.decode(proof).map_err(|_| ScramError::Malformed("the proof is not base64"))?;
        let binding = STANDARD
            .decode(binding)
            .map_err(|_| ScramError::Malformed("the channel binding is not base64"))?;
        if binding != self.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if nonce != &*self.nonce {
            return Err(ScramError::NonceMismatch);
        }

        let verifier = &self.credentials.verifier;
        let auth_message = [&*self.client_first_bare, ",", &self.message, ",", without_proof];
        let client_signature = hmac_parts(&verifier.stored_key, &auth_message);
        let mut client_key = [0u8; KEY_BYTES];
        let proof_fits = proof.len() == KEY_BYTES;
        for (index, byte) in client_key.iter_mut().enumerate() {
            *byte = proof.get(index).copied().unwrap_or(0) ^ client_signature[index];
        }
        let matches: bool = sha256(&client_key).ct_eq(&verifier.stored_key).into();
        if !(matches & proof_fits & self.credentials.known) {
            return Err(ScramError::Failed);
        }
        let server_signature = hmac_parts(&verifier.server_key, &auth_message);
        Ok(ScramSuccess {
            username: self.username,
            server_final: format!("v={}", STANDARD.encode(server_signature)).into_bytes(),
        })
    }
}

/// The exchange's state holds the verifier: only the user name is shown.
impl fmt::Debug for ServerFirst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerFirst").field("username", &self.username).finish_non_exhaustive()
    }
}

/// RFC 5802 `printable`: ASCII 0x21..=0x7E except `,`.
fn is_printable(byte: u8) -> bool {
    (0x21..=0x7E).contains(&byte) && byte != b','
}

/// Unescapes a saslname: `=2C` is `,`, `=3D` is `=`; any other `=` (or a raw `,`) is malformed.
fn decode_saslname(text: &str) -> Option<String> {
    let mut name = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['=', ',']) {
        name.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        name.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    name.push_str(rest);
    Some(name)
}

/// Escapes a user name for `n=` (what a client does; used by tests and test clients).
pub fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> Key {
    let mut salted = [0u8; KEY_BYTES];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
    salted
}

fn hmac(key: &[u8], message: &[u8]) -> Key {
    hmac_parts(key, &[message])
}

fn hmac_parts(key: &[u8], parts: &[impl AsRef<[u8]>]) -> Key {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part.as_ref());
    }
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

/// The client's side of an exchange, for tests and test clients (the broker never runs it).
#[derive(Debug, Clone)]
pub struct ScramClient {
    password: Vec<u8>,
    client_first_bare: String,
    nonce: String,
}

/// A client-final message and the server signature the server must answer with.
#[derive(Debug, Clone)]
pub struct ClientFinal {
    pub message: Vec<u8>,
    server_signature: Key,
}

impl ScramClient {
    /// Starts an exchange as `username` (escaped here) with `nonce`.
    pub fn new(username: &str, password: &[u8], nonce: &str) -> ScramClient {
        ScramClient {
            password: password.to_vec(),
            client_first_bare: format!("n={},r={nonce}", encode_saslname(username)),
            nonce: nonce.to_owned(),
        }
    }

    /// The client-first message (`n,,` header: no channel binding, no authzid).
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Answers the server-first message; `Err` if it is malformed or its nonce does not extend
    /// ours.
    pub fn client_final(&self, server_first: &[u8]) -> Result<ClientFinal, ScramError> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("server-first is not UTF-8"))?;
        let mut attributes = text.split(',');
        let mut next = |prefix: &str| {
            attributes
                .next()
                .and_then(|value| value.strip_prefix(prefix))
                .ok_or(ScramError::Malformed("server-first is incomplete"))
        };
        let nonce = next("r=")?;
        let salt = STANDARD
            .decode(next("s=")?)
            .map_err(|_| ScramError::Malformed("the salt is not base64"))?;
        let iterations: u32 =
            next("i=")?.parse().map_err(|_| ScramError::Malformed("bad iteration count"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salted = salted_password(&self.password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let server_key = hmac(&salted, b"Server Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = [&*self.client_first_bare, ",", text, ",", &without_proof];
        let client_signature = hmac_parts(&stored_key, &auth_message);
        let mut proof = client_key;
        for (byte, signature) in proof.iter_mut().zip(client_signature) {
            *byte ^= signature;
        }
        Ok(ClientFinal {
            message: format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes(),
            server_signature: hmac_parts(&server_key, &auth_message),
        })
    }
}

impl ClientFinal {
    /// Whether the server-final message proves the server knew the verifier.
    pub fn verify_server_final(&self, server_final: &[u8]) -> bool {
        let expected = format!("v={}", STANDARD.encode(self.server_signature));
        server_final.ct_eq(expected.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 §3.
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    const SECRET: [u8; 32] = [7; 32];

    fn pencil() -> ScramVerifier {
        let salt = STANDARD.decode(SALT_B64).unwrap();
        ScramVerifier::derive(b"pencil", &salt, 4096)
    }

    /// Looks up "user" (password "pencil") and nobody else.
    fn lookup(username: &str) -> ScramCredentials {
        match username {
            "user" => ScramCredentials::known(pencil()),
            other => ScramCredentials::unknown(other, &SECRET, 4096),
        }
    }

    fn first(client_first: &str) -> Result<ServerFirst, ScramError> {
        server_first(client_first.as_bytes(), lookup, SERVER_NONCE)
    }

    /// Runs client-first and client-final against "user"/"pencil"; the server-final on success.
    fn check(client_first: &str, client_final: &str) -> Result<String, ScramError> {
        let success = first(client_first)?.finish(client_final.as_bytes())?;
        Ok(String::from_utf8(success.server_final).unwrap())
    }

    #[test]
    fn rfc7677_vector() {
        let exchange = first(CLIENT_FIRST).unwrap();
        assert_eq!(exchange.message(), SERVER_FIRST.as_bytes());
        assert_eq!(exchange.username(), "user");
        let success = exchange.finish(CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(&*success.username, "user");
        assert_eq!(success.server_final, SERVER_FINAL.as_bytes());
    }

    #[test]
    fn rfc7677_vector_from_the_client_side() {
        let client = ScramClient::new("user", b"pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.client_first(), CLIENT_FIRST.as_bytes());
        let last = client.client_final(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(last.message, CLIENT_FINAL.as_bytes());
        assert!(last.verify_server_final(SERVER_FINAL.as_bytes()));
        assert!(!last.verify_server_final(b"v=AAAA"));
    }

    #[test]
    fn verifier_line_round_trips_and_checks_plain_passwords() {
        let verifier = pencil();
        let line = verifier.to_hash_string();
        let parsed = ScramVerifier::parse(line.strip_prefix("$scram-sha-256$").unwrap()).unwrap();
        assert_eq!(parsed, verifier);
        assert!(verifier.verify_password(b"pencil"));
        assert!(!verifier.verify_password(b"pencil "));
        assert!(!verifier.verify_password(b""));
    }

    #[test]
    fn wrong_proof_fails() {
        let client = ScramClient::new("user", b"pen", "rOprNGfwEbeRWgbNEkqO");
        let wrong = client.client_final(SERVER_FIRST.as_bytes()).unwrap();
        let wrong = String::from_utf8(wrong.message).unwrap();
        assert_eq!(check(CLIENT_FIRST, &wrong), Err(ScramError::Failed));
        // A proof of the wrong length fails the same way.
        let short = CLIENT_FINAL.replace("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "AAAA");
        assert_eq!(check(CLIENT_FIRST, &short), Err(ScramError::Failed));
    }

    #[test]
    fn nonce_and_binding_must_match() {
        let other_nonce = CLIENT_FINAL.replace("$k0,", "$k1,");
        assert_eq!(check(CLIENT_FIRST, &other_nonce), Err(ScramError::NonceMismatch));
        let binding = CLIENT_FINAL.replace("c=biws", "c=eSws");
        assert_eq!(check(CLIENT_FIRST, &binding), Err(ScramError::ChannelBindingMismatch));
    }

    #[test]
    fn y_header_is_accepted_with_its_own_binding() {
        // `y,,` changes the binding and so the proof: the RFC's proof no longer matches, but the
        // exchange gets to the proof (it is not refused as malformed or as a binding mismatch).
        let client_first = CLIENT_FIRST.replacen('n', "y", 1);
        let client_final = CLIENT_FINAL.replace("c=biws", "c=eSws");
        assert_eq!(check(&client_first, &client_final), Err(ScramError::Failed));
        assert_eq!(check(&client_first, CLIENT_FINAL), Err(ScramError::ChannelBindingMismatch));
    }

    #[test]
    fn unknown_user_fails_at_the_proof_with_a_stable_salt() {
        let exchange = first("n,,n=nobody,r=abc").unwrap();
        let message = String::from_utf8(exchange.message().to_vec()).unwrap();
        assert!(message.starts_with("r=abc%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s="), "{message}");
        assert!(message.ends_with(",i=4096"), "{message}");
        // The same user gets the same salt again; another user another one.
        assert_eq!(first("n,,n=nobody,r=abc").unwrap().message(), exchange.message());
        assert_ne!(first("n,,n=nobody2,r=abc").unwrap().message(), exchange.message());
        // Even the right proof for the stand-in's salt (as if the stand-in were a password
        // "pencil") fails.
        let client = ScramClient::new("nobody", b"pencil", "abc");
        let last = client.client_final(exchange.message()).unwrap();
        assert_eq!(exchange.finish(&last.message), Err(ScramError::Failed));
    }

    #[test]
    fn escaped_user_names() {
        let seen = |client_first: &str| first(client_first).map(|e| e.username().to_owned());
        assert_eq!(seen("n,,n=a=2Cb=3Dc,r=x").as_deref(), Ok("a,b=c"));
        assert!(matches!(seen("n,,n=a=2xb,r=x"), Err(ScramError::Malformed(_))));
        assert!(matches!(seen("n,,n=a=,r=x"), Err(ScramError::Malformed(_))));
        assert_eq!(seen("n,a=user,n=user,r=x").as_deref(), Ok("user"));
        assert_eq!(seen("n,a=other,n=user,r=x"), Err(ScramError::AuthorizationIdentity));
        // Extensions after the nonce are ignored.
        assert_eq!(seen("n,,n=user,r=x,t=1").as_deref(), Ok("user"));
    }

    #[test]
    fn malformed_client_first() {
        for (client_first, expected) in [
            ("p=tls-unique,,n=user,r=x", ScramError::ChannelBindingUnsupported),
            ("", ScramError::Malformed("client-first has no gs2 header")),
            ("n,,", ScramError::Malformed("client-first has no user name")),
            ("x,,n=user,r=x", ScramError::Malformed("unknown gs2 channel-binding flag")),
            ("n,,m=ext,n=user,r=x", ScramError::Malformed("unsupported mandatory extension")),
            ("n,,r=x,n=user", ScramError::Malformed("client-first has no user name")),
            ("n,,n=user", ScramError::Malformed("client-first has no nonce")),
            ("n,,n=user,r=", ScramError::Malformed("client-first has no nonce")),
            ("n,,n=,r=x", ScramError::Malformed("client-first has no user name")),
            ("n,b=user,n=user,r=x", ScramError::Malformed("bad authzid")),
        ] {
            assert_eq!(first(client_first).err(), Some(expected), "{client_first:?}");
        }
        assert!(matches!(
            server_first(b"n,,n=\xff,r=x", lookup, SERVER_NONCE),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_client_final() {
        for client_final in [
            "",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
            "c=biws,p=AAAA",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!",
            "c=!!,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
        ] {
            assert!(
                matches!(check(CLIENT_FIRST, client_final), Err(ScramError::Malformed(_))),
                "{client_final:?}"
            );
        }
    }
}
