//! Sealing RKE's state (the cluster's PKI) that travels beside an S3 snapshot.
//!
//! A restore on a new workstation, with only cluster.yml and the bucket, needs the PKI the
//! hosts trust. rkectl stores it beside the snapshot only when the user gives a passphrase
//! of their own: the S3 credentials are never the key (they rotate, may be temporary, and
//! whoever reads the bucket has them). The passphrase goes through Argon2id, so a copy of
//! the object does not fall to fast offline guessing; the key seals with ChaCha20-Poly1305,
//! and the snapshot's name is associated data, so a sealed state cannot be moved to
//! another snapshot. A key id (derived from the key, different for every blob) tells a
//! wrong passphrase from an altered blob.

use crate::model::SnapshotName;
use crate::secret::Secret;
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

/// The only format written.
const FORMAT: u32 = 2;
/// Argon2id cost: 64 MiB and three passes (above OWASP's minimum; about a second).
const MEMORY_KIB: u32 = 64 * 1024;
const PASSES: u32 = 3;
/// Shortest passphrase accepted: the seal protects every private key of the cluster.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// RKE's state, sealed with a passphrase, as stored in rkectl's S3 manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedState {
    pub format: u32,
    /// Always `argon2id`; named so that a later format can change it.
    pub kdf: String,
    pub memory_kib: u32,
    pub passes: u32,
    pub lanes: u32,
    /// Base64 of the random Argon2 salt.
    pub salt: String,
    /// Hex of 8 bytes derived from the key: equal for the right passphrase.
    pub key_id: String,
    /// Base64 of the random nonce.
    pub nonce: String,
    /// Base64 of the ciphertext and its tag.
    pub ciphertext: String,
}

/// Why a sealed state does not open; nothing secret is in these messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the passphrase is not the one the state was sealed with (key id {expected}, this passphrase gives {got})")]
    WrongPassphrase { expected: String, got: String },
    #[error("the sealed state was altered, or belongs to another snapshot than {snapshot}")]
    Altered { snapshot: String },
    #[error("the sealed state is in a format this rkectl does not know ({0})")]
    Unknown(String),
    #[error("the passphrase has {0} characters; at least {MIN_PASSPHRASE_CHARS} are needed")]
    TooShort(usize),
}

/// Refuses a passphrase too short to protect the cluster's private keys.
pub fn check_passphrase(passphrase: &Secret) -> Result<(), SealError> {
    let n = passphrase.expose().chars().count();
    if n < MIN_PASSPHRASE_CHARS { Err(SealError::TooShort(n)) } else { Ok(()) }
}

struct Keys {
    cipher: ChaCha20Poly1305,
    key_id: String,
}

fn derive(passphrase: &Secret, salt: &[u8], memory_kib: u32, passes: u32, lanes: u32) -> Result<Keys, SealError> {
    let params =
        Params::new(memory_kib, passes, lanes, Some(32)).map_err(|e| SealError::Unknown(format!("argon2: {e}")))?;
    let mut master = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.expose().as_bytes(), salt, &mut master)
        .map_err(|e| SealError::Unknown(format!("argon2: {e}")))?;
    let key = blake3::derive_key("rkectl 2026 sealed RKE state v2 encryption key", &master);
    let id = blake3::derive_key("rkectl 2026 sealed RKE state v2 key id", &master);
    Ok(Keys { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)), key_id: hex(&id[..8]) })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn aad(snapshot: &SnapshotName) -> Vec<u8> {
    format!("rkectl sealed RKE state v2\0{snapshot}").into_bytes()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Seals `state` (RKE's state file as text) for snapshot `snapshot`.
pub fn seal(passphrase: &Secret, snapshot: &SnapshotName, state: &Secret) -> Result<SealedState, SealError> {
    check_passphrase(passphrase)?;
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    crate::secret::random_bytes(&mut salt);
    // A fresh key per blob (fresh salt) and a random nonce: a nonce never repeats for a key.
    crate::secret::random_bytes(&mut nonce);
    let keys = derive(passphrase, &salt, MEMORY_KIB, PASSES, 1)?;
    let ciphertext = keys
        .cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: state.expose().as_bytes(), aad: &aad(snapshot) })
        .expect("encryption of an in-memory buffer cannot fail");
    Ok(SealedState {
        format: FORMAT,
        kdf: "argon2id".into(),
        memory_kib: MEMORY_KIB,
        passes: PASSES,
        lanes: 1,
        salt: b64().encode(salt),
        key_id: keys.key_id,
        nonce: b64().encode(nonce),
        ciphertext: b64().encode(ciphertext),
    })
}

/// Opens what [`seal`] made for the same snapshot with the same passphrase.
pub fn open(passphrase: &Secret, snapshot: &SnapshotName, sealed: &SealedState) -> Result<Secret, SealError> {
    if sealed.format != FORMAT || sealed.kdf != "argon2id" {
        return Err(SealError::Unknown(format!("format {} with {}", sealed.format, sealed.kdf)));
    }
    // Bounds keep a hostile manifest from asking for gigabytes of memory or hours of work.
    if sealed.memory_kib > 1024 * 1024 || sealed.passes > 16 || sealed.lanes > 16 {
        return Err(SealError::Unknown(format!(
            "argon2id with {} KiB, {} passes, {} lanes",
            sealed.memory_kib, sealed.passes, sealed.lanes
        )));
    }
    let field = |what: &str, v: &str| b64().decode(v).map_err(|_| SealError::Unknown(format!("{what} is not base64")));
    let salt = field("salt", &sealed.salt)?;
    let nonce = field("nonce", &sealed.nonce)?;
    let ciphertext = field("ciphertext", &sealed.ciphertext)?;
    if nonce.len() != 12 {
        return Err(SealError::Unknown(format!("a nonce of {} bytes", nonce.len())));
    }
    let keys = derive(passphrase, &salt, sealed.memory_kib, sealed.passes, sealed.lanes)?;
    if keys.key_id != sealed.key_id {
        return Err(SealError::WrongPassphrase { expected: sealed.key_id.clone(), got: keys.key_id });
    }
    let plain = keys
        .cipher
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: &aad(snapshot) })
        .map_err(|_| SealError::Altered { snapshot: snapshot.to_string() })?;
    String::from_utf8(plain).map(Secret::new).map_err(|_| SealError::Altered { snapshot: snapshot.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> SnapshotName {
        SnapshotName::new(s).unwrap()
    }

    #[test]
    fn a_sealed_state_opens_only_with_its_passphrase_and_its_snapshot() {
        let pass = Secret::new("correct horse battery");
        let state = Secret::new("{\"currentState\": \"ca private key\"}");
        let sealed = seal(&pass, &name("snap-1"), &state).unwrap();
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(!json.contains("ca private key") && !json.contains("correct horse"), "{json}");
        assert_eq!(open(&pass, &name("snap-1"), &sealed).unwrap().expose(), state.expose());

        let wrong = open(&Secret::new("another passphrase"), &name("snap-1"), &sealed);
        assert!(matches!(wrong, Err(SealError::WrongPassphrase { .. })), "{wrong:?}");
        // Moved beside another snapshot: the key is right, the associated data is not.
        let moved = open(&pass, &name("snap-2"), &sealed);
        assert_eq!(moved.map(|s| s.expose().to_string()), Err(SealError::Altered { snapshot: "snap-2".into() }));

        let mut altered = sealed.clone();
        let mut ct = b64().decode(&altered.ciphertext).unwrap();
        ct[0] ^= 1;
        altered.ciphertext = b64().encode(ct);
        assert!(matches!(open(&pass, &name("snap-1"), &altered), Err(SealError::Altered { .. })));
    }

    #[test]
    fn every_blob_has_its_own_salt_nonce_and_key_id() {
        let pass = Secret::new("correct horse battery");
        let state = Secret::new("state");
        let a = seal(&pass, &name("s"), &state).unwrap();
        let b = seal(&pass, &name("s"), &state).unwrap();
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.key_id, b.key_id);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn short_passphrases_and_hostile_costs_are_refused() {
        let short = seal(&Secret::new("minioadmin"), &name("s"), &Secret::new("x"));
        assert_eq!(short, Err(SealError::TooShort(10)));
        let pass = Secret::new("correct horse battery");
        let mut s = seal(&pass, &name("s"), &Secret::new("x")).unwrap();
        s.memory_kib = 64 * 1024 * 1024;
        assert!(matches!(open(&pass, &name("s"), &s), Err(SealError::Unknown(_))));
    }
}
