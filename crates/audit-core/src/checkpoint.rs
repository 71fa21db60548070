//! Signed checkpoints: the C2SP `tlog-checkpoint` body (origin line, tree size, base64
//! root hash) as a C2SP `signed-note` with an Ed25519 key, through the `signed_note`
//! crate (a port of Go's `sumdb/note`, so Go's tools read what this writes).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use signed_note::{Note, StandardSigner, StandardVerifier, VerifierList};

use crate::merkle::Hash;

/// A tree head as a checkpoint states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name, the first line: by convention its URL without the scheme.
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// A signing key in the signed-note text form (`PRIVATE+KEY+name+id+key`): what
/// `audit-server keygen` writes to its file. Its `Debug` form hides it.
pub struct SigningKey(String);

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the signing key is not a signed-note Ed25519 private key: {0}")]
    BadSigningKey(String),
    #[error("the verifier key is not a signed-note Ed25519 verifier key: {0}")]
    BadVerifierKey(String),
    #[error("the origin must be one non-empty line")]
    BadOrigin,
    #[error("the note is not signed by the given key, or its signature is wrong: {0}")]
    NotVerified(String),
    #[error("the signed text is not a checkpoint: {0}")]
    Malformed(&'static str),
}

impl SigningKey {
    /// A new key named `name`, with its verifier key (`name+id+key`), from the
    /// operating system's random source.
    pub fn generate(name: &str) -> (Self, String) {
        let (signing, verifier) = signed_note::generate_key(&mut rand_core_06::OsRng, name);
        (Self(signing), verifier)
    }

    /// A key read back from its text form (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let text = text.trim();
        StandardSigner::new(text)
            .map_err(|error| CheckpointError::BadSigningKey(error.to_string()))?;
        Ok(Self(text.to_owned()))
    }

    /// The key's name (`PRIVATE+KEY+name+id+key`), conventionally the log's origin.
    pub fn name(&self) -> &str {
        self.0.split('+').nth(2).unwrap_or_default()
    }

    /// The text form, for the key file.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SigningKey(..)")
    }
}

impl Checkpoint {
    /// The checkpoint body: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// The body signed with `key`, as a signed note.
    pub fn sign(&self, key: &SigningKey) -> Result<String, CheckpointError> {
        if self.origin.is_empty() || self.origin.contains('\n') {
            return Err(CheckpointError::BadOrigin);
        }
        let signer = StandardSigner::new(key.expose())
            .map_err(|error| CheckpointError::BadSigningKey(error.to_string()))?;
        let mut note = Note::new(self.body().as_bytes(), &[])
            .map_err(|error| CheckpointError::NotVerified(error.to_string()))?;
        note.add_sigs(&[&signer])
            .map_err(|error| CheckpointError::BadSigningKey(error.to_string()))?;
        String::from_utf8(note.to_bytes()).map_err(|_| CheckpointError::Malformed("not UTF-8"))
    }

    /// The checkpoint of a signed note, once its signature by `verifier_key` checks.
    pub fn open(signed: &str, verifier_key: &str) -> Result<Self, CheckpointError> {
        let verifier = StandardVerifier::new(verifier_key.trim())
            .map_err(|error| CheckpointError::BadVerifierKey(error.to_string()))?;
        let note = Note::from_bytes(signed.as_bytes())
            .map_err(|error| CheckpointError::NotVerified(error.to_string()))?;
        note.verify(&VerifierList::new(vec![Box::new(verifier)]))
            .map_err(|error| CheckpointError::NotVerified(error.to_string()))?;
        let text = std::str::from_utf8(note.text())
            .map_err(|_| CheckpointError::Malformed("not UTF-8"))?;
        Self::parse_body(text)
    }

    /// The first three lines of a checkpoint body (any extension lines after them are
    /// allowed by the format and ignored here).
    fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|origin| !origin.is_empty())
            .ok_or(CheckpointError::Malformed("no origin line"))?;
        let size = lines
            .next()
            .filter(|size| !size.is_empty() && size.bytes().all(|byte| byte.is_ascii_digit()))
            .and_then(|size| size.parse().ok())
            .ok_or(CheckpointError::Malformed(
                "the second line is not a tree size",
            ))?;
        let root = lines
            .next()
            .and_then(|root| STANDARD.decode(root).ok())
            .and_then(|root| Hash::try_from(root.as_slice()).ok())
            .ok_or(CheckpointError::Malformed(
                "the third line is not a base64 SHA-256 hash",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example key and note of Go's sumdb/note documentation.
    const GO_SIGNING_KEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VERIFIER_KEY: &str =
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_SIGNATURE_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "audit.example/log".to_owned(),
            size: 8,
            root: crate::merkle::root(&[crate::merkle::leaf_hash(b"")]),
        }
    }

    #[test]
    fn the_signature_is_the_one_gos_note_package_makes() {
        let key = SigningKey::parse(GO_SIGNING_KEY).unwrap();
        let signer = StandardSigner::new(key.expose()).unwrap();
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        let mut note = Note::new(text.as_bytes(), &[]).unwrap();
        note.add_sigs(&[&signer]).unwrap();

        let signed = String::from_utf8(note.to_bytes()).unwrap();

        assert_eq!(signed, format!("{text}\n{GO_SIGNATURE_LINE}"));
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_verifier_key() {
        let (key, verifier) = SigningKey::generate("audit.example/log");

        let signed = checkpoint().sign(&key).unwrap();

        assert!(signed.starts_with(&checkpoint().body()), "{signed}");
        assert!(
            signed.contains("\n\n\u{2014} audit.example/log "),
            "{signed}"
        );
        assert_eq!(Checkpoint::open(&signed, &verifier).unwrap(), checkpoint());
    }

    #[test]
    fn a_changed_checkpoint_or_another_key_does_not_open() {
        let (key, verifier) = SigningKey::generate("audit.example/log");
        let signed = checkpoint().sign(&key).unwrap();

        let grown = signed.replacen("\n8\n", "\n9\n", 1);
        assert!(Checkpoint::open(&grown, &verifier).is_err());
        assert!(Checkpoint::open(&signed, GO_VERIFIER_KEY).is_err());
        let (other, _) = SigningKey::generate("audit.example/log");
        let forged = checkpoint().sign(&other).unwrap();
        assert!(Checkpoint::open(&forged, &verifier).is_err());
    }

    #[test]
    fn a_key_hides_in_debug_and_a_bad_one_is_refused() {
        let key = SigningKey::parse(GO_SIGNING_KEY).unwrap();

        assert!(!format!("{key:?}").contains("AYEKF"));
        assert_eq!(key.name(), "PeterNeumann");
        assert!(SigningKey::parse("PRIVATE+KEY+nope").is_err());
        assert!(Checkpoint::open("x\n\n\u{2014} a b\n", "not a key").is_err());
    }
}
