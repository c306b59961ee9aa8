//! Password files at the crate's boundary: files written by the real `mosquitto_passwd` (Debian's
//! `mosquitto` package, the tool operators use), a published `$6$` line, our argon2id lines, and
//! `set_password` editing a file in place.

use std::fs;
use std::path::Path;
use std::process::Command;

use shardmq_auth::{hash_password, set_password, PasswordFile};

/// Runs `mosquitto_passwd` with `args`; fails the test, saying how to install it, if it is missing.
fn mosquitto_passwd(args: &[&str]) {
    let output = match Command::new("mosquitto_passwd").args(args).output() {
        Ok(output) => output,
        Err(error) => panic!(
            "cannot run mosquitto_passwd ({error}): install Debian's `mosquitto` package \
             (apt-get install mosquitto)"
        ),
    };
    assert!(
        output.status.success(),
        "mosquitto_passwd {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn load(path: &Path) -> PasswordFile {
    PasswordFile::load(path).unwrap_or_else(|error| panic!("{error}"))
}

fn parse(text: &str) -> PasswordFile {
    PasswordFile::parse(text).unwrap_or_else(|error| panic!("{error}"))
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|error| panic!("cannot make a temporary directory: {error}"))
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_else(|| panic!("temporary path is not UTF-8: {}", path.display()))
}

#[test]
fn mosquitto_passwd_default_pbkdf2_lines_verify() {
    let dir = temp_dir();
    let path = dir.path().join("passwd");
    mosquitto_passwd(&["-c", "-b", path_str(&path), "user", "secret"]);
    mosquitto_passwd(&["-b", path_str(&path), "user2", "other"]);
    let text = fs::read_to_string(&path).unwrap_or_else(|error| panic!("{error}"));
    assert!(text.lines().all(|line| line.contains(":$7$101$")), "not PBKDF2 lines: {text}");

    let passwords = load(&path);
    assert_eq!(passwords.len(), 2);
    assert!(passwords.contains("user") && passwords.contains("user2"));
    assert!(passwords.verify("user", b"secret"));
    assert!(passwords.verify("user2", b"other"));
    assert!(!passwords.verify("user", b"other"));
    assert!(!passwords.verify("user", b"secret "));
    assert!(!passwords.verify("user", b""));
    assert!(!passwords.verify("user2", b"secret"));
    assert!(!passwords.verify("nobody", b"secret"));
}

#[test]
fn mosquitto_passwd_sha512_lines_verify() {
    let dir = temp_dir();
    let path = dir.path().join("passwd");
    mosquitto_passwd(&["-H", "sha512", "-c", "-b", path_str(&path), "user", "pa:ss wörd"]);
    let text = fs::read_to_string(&path).unwrap_or_else(|error| panic!("{error}"));
    assert!(text.starts_with("user:$6$"), "not a SHA-512 line: {text}");

    let passwords = load(&path);
    assert!(passwords.verify("user", "pa:ss wörd".as_bytes()));
    assert!(!passwords.verify("user", b"pa:ss"));
}

#[test]
fn a_published_mosquitto_1_x_line_verifies() {
    // `mosquitto_passwd -U` (1.x) output for user `lxy`, password `123`, from a 2018 blog post on
    // mosquitto_passwd; SHA-512("123" || salt) recomputed independently with Python's hashlib.
    let passwords = parse(
        "lxy:$6$SPFacwqt9GCeQgIc$j8QVIonW3QPlcWwkbEBnTt7pDyyD6bPG2Vc0Qw9lx8rQenou0wrqQ+o9EiEZhZx3\
         OhEuyaWzqD4hBU3Mgme3EA==\n",
    );
    assert!(passwords.verify("lxy", b"123"));
    assert!(!passwords.verify("lxy", b"1234"));
}

#[test]
fn argon2id_hashes_round_trip() {
    let hash = hash_password("correct horse");
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert_ne!(hash, hash_password("correct horse"), "salts must differ");
    let passwords = parse(&format!("# ours\nalice:{hash}\n"));
    assert!(passwords.verify("alice", b"correct horse"));
    assert!(!passwords.verify("alice", b"correct horsE"));

    // A line hashed with other costs verifies with the costs it names.
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let params = argon2::Params::new(8 * 1024, 1, 1, None).unwrap_or_else(|e| panic!("{e}"));
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap_or_else(|e| panic!("{e}"));
    let cheap = hasher.hash_password(b"pw", &salt).unwrap_or_else(|e| panic!("{e}")).to_string();
    assert!(cheap.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{cheap}");
    let passwords = parse(&format!("bob:{cheap}"));
    assert!(passwords.verify("bob", b"pw"));
    assert!(!passwords.verify("bob", b"pW"));
}

#[test]
fn an_unknown_user_is_refused_even_with_the_password_of_the_entry_it_is_hashed_against() {
    // An unknown user's password is hashed against a stand-in entry (so that it costs what a
    // known user's does); that entry's password must not let it in.
    let hash = hash_password("shared");
    let passwords = parse(&format!("alice:{hash}\nbob:{}\n", hash_password("other")));
    assert!(passwords.verify("alice", b"shared"));
    for unknown in ["mallory", "", "alice ", "ALICE"] {
        assert!(!passwords.verify(unknown, b"shared"), "{unknown:?} got in");
        assert!(!passwords.verify(unknown, b"other"), "{unknown:?} got in");
    }
    // An empty file has nothing to hash against, and lets no one in.
    assert!(!parse("# nobody\n").verify("alice", b"shared"));
}

#[test]
fn set_password_creates_replaces_and_keeps_other_lines() {
    let dir = temp_dir();
    let path = dir.path().join("passwd");

    set_password(&path, "alice", "first").unwrap_or_else(|error| panic!("{error}"));
    assert!(load(&path).verify("alice", b"first"));
    assert_mode_0600(&path);

    // Mosquitto's own lines, a comment and a blank line around ours.
    mosquitto_passwd(&["-b", path_str(&path), "bob", "bobs"]);
    let mut text = fs::read_to_string(&path).unwrap_or_else(|error| panic!("{error}"));
    text.insert_str(0, "# operators: see the runbook\n\n");
    fs::write(&path, &text).unwrap_or_else(|error| panic!("{error}"));

    set_password(&path, "alice", "second").unwrap_or_else(|error| panic!("{error}"));
    set_password(&path, "carol", "carols").unwrap_or_else(|error| panic!("{error}"));

    let after = fs::read_to_string(&path).unwrap_or_else(|error| panic!("{error}"));
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(lines.len(), 5, "{after}");
    assert_eq!(&lines[..2], &["# operators: see the runbook", ""]);
    assert!(lines[2].starts_with("alice:$argon2id$"), "alice's line stays in place: {after}");
    let bob_line = text.lines().find(|line| line.starts_with("bob:"));
    assert_eq!(Some(lines[3]), bob_line, "bob's line is kept byte for byte");
    assert!(lines[4].starts_with("carol:$argon2id$"));
    assert_mode_0600(&path);

    let passwords = load(&path);
    assert_eq!(passwords.len(), 3);
    assert!(passwords.verify("alice", b"second"));
    assert!(!passwords.verify("alice", b"first"));
    assert!(passwords.verify("bob", b"bobs"));
    assert!(passwords.verify("carol", b"carols"));
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap_or_else(|error| panic!("{error}"))
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name() != "passwd")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
}

#[test]
fn set_password_refuses_usernames_the_file_cannot_hold() {
    let dir = temp_dir();
    let path = dir.path().join("passwd");
    for username in ["", "a:b", "#root", " alice", "bob\n", "x\ty"] {
        let error = match set_password(&path, username, "pw") {
            Ok(()) => panic!("username {username:?} was accepted"),
            Err(error) => error,
        };
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{username:?}: {error}");
    }
    assert!(!path.exists(), "nothing is written for a refused username");
}

#[cfg(unix)]
fn assert_mode_0600(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(path).unwrap_or_else(|error| panic!("{error}")).permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[cfg(not(unix))]
fn assert_mode_0600(_path: &Path) {}

#[test]
fn comments_blanks_and_spaces_are_skipped_as_mosquitto_does() {
    let hash = hash_password("pw");
    let passwords = parse(&format!("\n# comment\n   \n  bob :  {hash} \r\n"));
    assert_eq!(passwords.len(), 1);
    assert!(passwords.verify("bob", b"pw"));
}

/// Checks that `text` is refused with exactly `expected` as its message.
fn check_error(text: &str, expected: &str) {
    match PasswordFile::parse(text) {
        Ok(passwords) => panic!("accepted {text:?}: {passwords:?}"),
        Err(error) => assert_eq!(error.to_string(), expected, "for {text:?}"),
    }
}

#[test]
fn malformed_lines_are_errors_naming_the_line() {
    let good =
        "$7$101$NhxYqJicSQVb/fTH$k8XnI4i2QddoPk89UEEu4EF9pz4QTQ/jFd+YFUctL94kpeMxKRUFO0Jbelg67+\
                AfNb/nBwLB2xfFMH4Np9eECg==";
    assert!(parse(&format!("user:{good}")).verify("user", b"secret"));
    check_error("# c\nuser\n", "line 2: expected `username:hash`");
    check_error(&format!(":{good}"), "line 1: empty username");
    check_error(
        "user:plaintext",
        "line 1: user `user`: unknown hash scheme (expected `$7$` or `$6$` from \
         mosquitto_passwd, or `$argon2id$` or `$scram-sha-256$`); hash a plain-text file with \
         `mosquitto_passwd -U` first",
    );
    check_error(
        "user:$7$0$c2FsdA==$aGFzaA==",
        "line 1: user `user`: the `$7$` iteration count must be a number from 1",
    );
    check_error(
        "user:$7$101$c2FsdA==",
        "line 1: user `user`: a `$7$` hash must be `$7$iterations$salt$hash`",
    );
    check_error(
        "user:$6$c2FsdA==$aGFzaA==",
        "line 1: user `user`: the hash is not 64 bytes of base64",
    );
    check_error("user:$6$!!$aGFzaA==", "line 1: user `user`: the salt is not base64");
    check_error(
        "u:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
        "line 1: user `u`: not a complete argon2id PHC string",
    );
    check_error(&format!("a:{good}\n\na:{good}\n"), "line 3: user `a` is already on line 1");
    check_error(
        "u:$scram-sha-256$4095$c2FsdA==$AAAA$AAAA",
        "line 1: user `u`: the `$scram-sha-256$` iteration count must be a number from 4096",
    );
    check_error(
        "u:$scram-sha-256$4096$c2FsdA==$AAAA",
        "line 1: user `u`: a `$scram-sha-256$` hash must be \
         `$scram-sha-256$iterations$salt$StoredKey$ServerKey`",
    );
    check_error(
        "u:$scram-sha-256$4096$c2FsdA==$AAAA$AAAA",
        "line 1: user `u`: the StoredKey is not 32 bytes of base64",
    );
}

/// RFC 7677's user "user" with password "pencil", as a line of ours.
const PENCIL_LINE: &str = "user:$scram-sha-256$4096$W22ZaJ0SNY7soEsUEjb6gQ==$\
                           WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=$\
                           wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

#[test]
fn scram_lines_serve_plain_passwords_and_scram_exchanges() {
    use shardmq_auth::scram::{server_first, ScramClient, ScramError};

    let passwords = parse(&format!("{PENCIL_LINE}\nother:{}\n", hash_password("pw")));
    assert!(passwords.verify("user", b"pencil"));
    assert!(!passwords.verify("user", b"pencil2"));
    assert!(passwords.verify("other", b"pw"));

    // RFC 7677's exchange runs against the file's entry.
    let client = ScramClient::new("user", b"pencil", "rOprNGfwEbeRWgbNEkqO");
    let exchange = server_first(
        &client.client_first(),
        |name| passwords.scram_credentials(name),
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    )
    .unwrap();
    let last = client.client_final(exchange.message()).unwrap();
    let success = exchange.finish(&last.message).unwrap();
    assert!(last.verify_server_final(&success.server_final));

    // An argon2id user cannot use SCRAM, and fails like an unknown user: at the proof.
    for name in ["other", "nobody"] {
        let client = ScramClient::new(name, b"pw", "abc");
        let exchange =
            server_first(&client.client_first(), |name| passwords.scram_credentials(name), "xyz")
                .unwrap();
        let text = String::from_utf8(exchange.message().to_vec()).unwrap();
        // The stand-in shows the iteration count the file's SCRAM entries use.
        assert!(text.ends_with(",i=4096"), "{text}");
        let last = client.client_final(exchange.message()).unwrap();
        assert_eq!(exchange.finish(&last.message), Err(ScramError::Failed));
    }
}

#[test]
fn set_scram_password_writes_a_line_both_logins_accept() {
    use shardmq_auth::scram::{server_first, ScramClient};
    use shardmq_auth::set_scram_password;

    let dir = temp_dir();
    let path = dir.path().join("passwd");
    set_password(&path, "argon", "a").unwrap();
    set_scram_password(&path, "sam", "s3cret", 4096).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("\nsam:$scram-sha-256$4096$"), "{text}");
    let passwords = load(&path);
    assert!(passwords.verify("sam", b"s3cret") && passwords.verify("argon", b"a"));
    let client = ScramClient::new("sam", b"s3cret", "n0nce");
    let exchange =
        server_first(&client.client_first(), |name| passwords.scram_credentials(name), "srv")
            .unwrap();
    let last = client.client_final(exchange.message()).unwrap();
    assert!(exchange.finish(&last.message).is_ok());
    // Replacing the entry with an argon2id one takes SCRAM away.
    set_password(&path, "sam", "s3cret").unwrap();
    assert!(!fs::read_to_string(&path).unwrap().contains("scram"));

    let error = set_scram_password(&path, "sam", "x", 4095).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn load_names_the_file_and_line() {
    let dir = temp_dir();
    let path = dir.path().join("passwd");
    fs::write(&path, "# users\nbroken line\n").unwrap_or_else(|error| panic!("{error}"));
    let error = match PasswordFile::load(&path) {
        Ok(passwords) => panic!("accepted: {passwords:?}"),
        Err(error) => error,
    };
    assert_eq!(error.to_string(), format!("{}:2: expected `username:hash`", path.display()));
    assert_eq!(error.line_number(), Some(2));

    let missing = dir.path().join("missing");
    let error = match PasswordFile::load(&missing) {
        Ok(passwords) => panic!("accepted: {passwords:?}"),
        Err(error) => error,
    };
    let message = error.to_string();
    assert!(message.starts_with(&format!("{}: ", missing.display())), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn set_password_keeps_the_files_owner() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = temp_dir();
    let path = dir.path().join("passwd");
    fs::write(&path, "").expect("create the file");
    let me = fs::metadata(&path).expect("metadata").uid();
    // As root (CI, `sudo shardmq passwd`), hand the file to another user first: it must stay
    // theirs. Otherwise the file is ours and must stay ours.
    let owner = if me == 0 { 65534 } else { me };
    if me == 0 {
        std::os::unix::fs::chown(&path, Some(owner), Some(owner)).expect("chown");
    }
    set_password(&path, "alice", "secret").expect("set a password");
    let after = fs::metadata(&path).expect("metadata");
    assert_eq!((after.uid(), after.gid() == owner || me != 0), (owner, true));
    assert!(load(&path).verify("alice", b"secret"));
}
