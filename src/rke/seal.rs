//! Sealing RKE's state (the cluster's PKI) that travels beside an S3 snapshot.
//!
//! A restore on a new workstation, with only cluster.yml and the bucket, needs the PKI the
//! hosts trust. rkectl stores it beside the snapshot only when the user gives a passphrase
//! of their own: the S3 credentials are never the key (they rotate, may be temporary, and
//! whoever reads the bucket has them). The passphrase goes through Argon2id, so a copy of
//! the object does not fall to fast offline guessing; the key seals with ChaCha20-Poly1305.
//! A key id (derived from the key, different for every blob) tells a wrong passphrase from
//! an altered blob.
//!
//! What the seal is bound to (its associated data) is what the restore relies on:
//! - format 3 (written now): the snapshot's name and the BLAKE3 checksum of its archive, so
//!   a sealed state opens only beside the very bytes it was saved with. Whoever can write
//!   the bucket cannot pair another database (with their own data, or an older one) with
//!   the genuine PKI: the restore pins the archive's checksum and opens the seal against it.
//! - format 2 (rkectl before this one): the snapshot's name only. Such blobs are in users'
//!   buckets and still open, so existing backups restore, but [`Bound::NameOnly`] says the
//!   archive beside them was not proven, and the plan warns so.

use crate::model::{Checksum, SnapshotName};
use crate::secret::Secret;
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

/// The format written: bound to the snapshot's name and its archive's checksum.
const FORMAT: u32 = 3;
/// The format of earlier rkectl versions, bound to the name only; still opened.
const FORMAT_NAME_ONLY: u32 = 2;
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
    #[error(
        "the sealed state beside snapshot {snapshot} was not sealed with the archive that is there now ({archive}): the archive or the sealed state was replaced or altered after the save, and neither can be trusted"
    )]
    OtherArchive { snapshot: String, archive: String },
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

/// The associated data of a format: format 3 binds the archive's bytes (by checksum).
fn aad(format: u32, snapshot: &SnapshotName, archive: &Checksum) -> Vec<u8> {
    match format {
        FORMAT_NAME_ONLY => format!("rkectl sealed RKE state v2\0{snapshot}").into_bytes(),
        _ => format!("rkectl sealed RKE state v3\0{snapshot}\0{archive}").into_bytes(),
    }
}

/// What a sealed state that opened was bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The snapshot's name and its archive's checksum (format 3).
    NameAndArchive,
    /// The snapshot's name only (format 2, written by earlier rkectl versions): the archive
    /// beside it may not be the one it was saved with.
    NameOnly,
}

/// A sealed state opened: RKE's state file as text, and what the seal proved.
#[derive(Debug)]
pub struct Opened {
    pub state: Secret,
    pub bound: Bound,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Seals `state` (RKE's state file as text) for snapshot `snapshot` whose archive has
/// checksum `archive`.
pub fn seal(
    passphrase: &Secret,
    snapshot: &SnapshotName,
    archive: &Checksum,
    state: &Secret,
) -> Result<SealedState, SealError> {
    check_passphrase(passphrase)?;
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    crate::secret::random_bytes(&mut salt);
    // A fresh key per blob (fresh salt) and a random nonce: a nonce never repeats for a key.
    crate::secret::random_bytes(&mut nonce);
    let keys = derive(passphrase, &salt, MEMORY_KIB, PASSES, 1)?;
    let ciphertext = keys
        .cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload { msg: state.expose().as_bytes(), aad: &aad(FORMAT, snapshot, archive) },
        )
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

/// Opens what [`seal`] made for the same snapshot and archive with the same passphrase
/// (or what an earlier rkectl sealed for the snapshot's name, see [`Bound::NameOnly`]).
pub fn open(
    passphrase: &Secret,
    snapshot: &SnapshotName,
    archive: &Checksum,
    sealed: &SealedState,
) -> Result<Opened, SealError> {
    let bound = match sealed.format {
        FORMAT => Bound::NameAndArchive,
        FORMAT_NAME_ONLY => Bound::NameOnly,
        _ => return Err(SealError::Unknown(format!("format {} with {}", sealed.format, sealed.kdf))),
    };
    if sealed.kdf != "argon2id" {
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
    let altered = || match bound {
        // The tag covers the archive's checksum too: which of the two changed is not known.
        Bound::NameAndArchive => {
            SealError::OtherArchive { snapshot: snapshot.to_string(), archive: archive.short().to_string() }
        }
        Bound::NameOnly => SealError::Altered { snapshot: snapshot.to_string() },
    };
    let plain = keys
        .cipher
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: &aad(sealed.format, snapshot, archive) })
        .map_err(|_| altered())?;
    let state = String::from_utf8(plain).map(Secret::new).map_err(|_| altered())?;
    Ok(Opened { state, bound })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> SnapshotName {
        SnapshotName::new(s).unwrap()
    }

    fn sum(bytes: &[u8]) -> Checksum {
        Checksum::of(bytes)
    }

    #[test]
    fn a_sealed_state_opens_only_with_its_passphrase_and_its_snapshot() {
        let pass = Secret::new("correct horse battery");
        let state = Secret::new("{\"currentState\": \"ca private key\"}");
        let archive = sum(b"the archive");
        let sealed = seal(&pass, &name("snap-1"), &archive, &state).unwrap();
        assert_eq!(sealed.format, 3);
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(!json.contains("ca private key") && !json.contains("correct horse"), "{json}");
        let opened = open(&pass, &name("snap-1"), &archive, &sealed).unwrap();
        assert_eq!((opened.state.expose(), opened.bound), (state.expose(), Bound::NameAndArchive));

        let wrong = open(&Secret::new("another passphrase"), &name("snap-1"), &archive, &sealed);
        assert!(matches!(wrong, Err(SealError::WrongPassphrase { .. })), "{wrong:?}");
        // Moved beside another snapshot: the key is right, the associated data is not.
        let moved = open(&pass, &name("snap-2"), &archive, &sealed);
        assert!(matches!(moved, Err(SealError::OtherArchive { .. })), "{moved:?}");

        let mut altered = sealed.clone();
        let mut ct = b64().decode(&altered.ciphertext).unwrap();
        ct[0] ^= 1;
        altered.ciphertext = b64().encode(ct);
        assert!(matches!(open(&pass, &name("snap-1"), &archive, &altered), Err(SealError::OtherArchive { .. })));
    }

    #[test]
    fn a_sealed_state_paired_with_another_archive_of_the_same_name_is_refused() {
        let pass = Secret::new("correct horse battery");
        let genuine = sum(b"the database the user saved");
        let sealed = seal(&pass, &name("snap-1"), &genuine, &Secret::new("pki")).unwrap();
        let other = sum(b"a database someone else put in the bucket");
        let e = open(&pass, &name("snap-1"), &other, &sealed).unwrap_err();
        assert_eq!(e, SealError::OtherArchive { snapshot: "snap-1".into(), archive: other.short().into() });
        let text = e.to_string();
        assert!(
            text.contains("not sealed with the archive that is there now") && text.contains(other.short()),
            "{text}"
        );
        // Declaring the blob an older, name-only one does not help: its tag covers the
        // checksum it was sealed with.
        let mut downgraded = sealed.clone();
        downgraded.format = 2;
        assert!(matches!(open(&pass, &name("snap-1"), &other, &downgraded), Err(SealError::Altered { .. })));
        assert_eq!(open(&pass, &name("snap-1"), &genuine, &sealed).unwrap().state.expose(), "pki");
    }

    /// A format-2 blob as rkectl sealed it before the archive was bound (same key
    /// derivation, the name alone as associated data).
    fn seal_v2(pass: &Secret, snapshot: &SnapshotName, state: &str) -> SealedState {
        let (salt, nonce) = ([7u8; 16], [9u8; 12]);
        let keys = derive(pass, &salt, 8 * 1024, 1, 1).unwrap();
        let aad = format!("rkectl sealed RKE state v2\0{snapshot}").into_bytes();
        let ct = keys.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: state.as_bytes(), aad: &aad }).unwrap();
        SealedState {
            format: 2,
            kdf: "argon2id".into(),
            memory_kib: 8 * 1024,
            passes: 1,
            lanes: 1,
            salt: b64().encode(salt),
            key_id: keys.key_id,
            nonce: b64().encode(nonce),
            ciphertext: b64().encode(ct),
        }
    }

    #[test]
    fn a_name_only_state_of_an_earlier_rkectl_still_opens_and_says_it_is_not_bound() {
        let pass = Secret::new("correct horse battery");
        let old = seal_v2(&pass, &name("snap-1"), "pki");
        // Any archive: the old format never bound one.
        let opened = open(&pass, &name("snap-1"), &sum(b"whatever is there"), &old).unwrap();
        assert_eq!((opened.state.expose(), opened.bound), ("pki", Bound::NameOnly));
        let moved = open(&pass, &name("snap-2"), &sum(b"x"), &old).unwrap_err();
        assert_eq!(moved, SealError::Altered { snapshot: "snap-2".into() });
        let mut future = old.clone();
        future.format = 4;
        assert!(matches!(open(&pass, &name("snap-1"), &sum(b"x"), &future), Err(SealError::Unknown(_))));
    }

    #[test]
    fn every_blob_has_its_own_salt_nonce_and_key_id() {
        let pass = Secret::new("correct horse battery");
        let state = Secret::new("state");
        let a = seal(&pass, &name("s"), &sum(b"a"), &state).unwrap();
        let b = seal(&pass, &name("s"), &sum(b"a"), &state).unwrap();
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.key_id, b.key_id);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn short_passphrases_and_hostile_costs_are_refused() {
        let short = seal(&Secret::new("minioadmin"), &name("s"), &sum(b"a"), &Secret::new("x"));
        assert_eq!(short, Err(SealError::TooShort(10)));
        let pass = Secret::new("correct horse battery");
        let mut s = seal(&pass, &name("s"), &sum(b"a"), &Secret::new("x")).unwrap();
        s.memory_kib = 64 * 1024 * 1024;
        assert!(matches!(open(&pass, &name("s"), &sum(b"a"), &s), Err(SealError::Unknown(_))));
    }
}
