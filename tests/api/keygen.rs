//! `audit-server keygen`: a checkpoint signing key in a private file, its verifier key
//! on the last line of standard output.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use audit_core::checkpoint::{Checkpoint, SigningKey};
use audit_core::merkle;
use audit_tests::server_process::workspace_binary;

fn keygen(arguments: &[&str]) -> std::process::Output {
    Command::new(workspace_binary("audit-server"))
        .arg("keygen")
        .args(arguments)
        .env_clear()
        .output()
        .unwrap()
}

#[test]
fn keygen_writes_a_private_key_file_and_prints_the_verifier_key_last() {
    let directory = tempfile::tempdir().unwrap();
    let out = directory.path().join("checkpoint.key");
    let out_text = out.to_str().unwrap();

    let made = keygen(&["--name", "audit.test/log", "--out", out_text]);

    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let stdout = String::from_utf8(made.stdout).unwrap();
    let verifier = stdout.lines().last().unwrap();
    assert!(verifier.starts_with("audit.test/log+"), "{stdout}");
    let metadata = std::fs::metadata(&out).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    let key_text = std::fs::read_to_string(&out).unwrap();
    assert!(
        !stdout.contains(key_text.trim()),
        "the private key was printed"
    );
    // What the key signs, the printed verifier key opens.
    let key = SigningKey::parse(&key_text).unwrap();
    let checkpoint = Checkpoint {
        origin: "audit.test/log".to_owned(),
        size: 1,
        root: merkle::leaf_hash(b"event"),
    };
    let signed = checkpoint.sign(&key).unwrap();
    assert_eq!(Checkpoint::open(&signed, verifier).unwrap(), checkpoint);

    // A second run never replaces a key.
    let again = keygen(&["--name", "audit.test/log", "--out", out_text]);
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), key_text);
}
