//! S3 keys handed to a node-side helper as a read-only file, never through its environment.

use crate::config::S3Settings;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// Where a helper finds its S3 keys inside its container.
pub const CREDENTIALS_FILE_IN_CONTAINER: &str = "/run/secrets/rkectl-s3.json";
/// The environment variable that names that file (the name, not the keys).
pub const CREDENTIALS_FILE_ENV: &str = "RKECTL_S3_CREDENTIALS_FILE";

#[derive(Serialize, Deserialize)]
struct CredentialsFile {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_token: Option<String>,
}

/// Keys read from the file.
#[derive(Debug)]
pub struct FileCredentials {
    pub access_key: Secret,
    pub secret_key: Secret,
    pub session_token: Option<Secret>,
}

/// The file's content for `s3`'s keys; `None` without keys (the helper then uses the
/// node's own credentials, its IAM role, as rke-tools does).
pub fn credentials_file(s3: &S3Settings) -> Option<Secret> {
    if s3.access_key.is_empty() && s3.secret_key.is_empty() {
        return None;
    }
    let file = CredentialsFile {
        access_key_id: s3.access_key.expose().to_string(),
        secret_access_key: s3.secret_key.expose().to_string(),
        session_token: s3.session_token.as_ref().map(|t| t.expose().to_string()),
    };
    Some(Secret::new(serde_json::to_string(&file).expect("two strings serialise")))
}

/// The keys in the file at `path`. Errors name the file, never its content.
pub fn read_credentials_file(path: &str) -> Result<FileCredentials, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the S3 credentials file {path}: {e}"))?;
    let file: CredentialsFile = serde_json::from_str(&text).map_err(|e| {
        format!("the S3 credentials file {path} is not valid (line {}, column {})", e.line(), e.column())
    })?;
    Ok(FileCredentials {
        access_key: Secret::new(file.access_key_id),
        secret_key: Secret::new(file.secret_access_key),
        session_token: file.session_token.map(Secret::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(access: &str, secret: &str) -> S3Settings {
        S3Settings {
            endpoint: "s3.example".into(),
            bucket: "b".into(),
            region: None,
            folder: None,
            custom_ca: None,
            access_key: Secret::new(access),
            secret_key: Secret::new(secret),
            session_token: None,
        }
    }

    #[test]
    fn keys_round_trip_through_the_file_and_no_keys_means_no_file() {
        assert!(credentials_file(&settings("", "")).is_none());
        let content = credentials_file(&settings("AKIAEXAMPLE", "s3cr3t\"quoted")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, content.expose()).unwrap();
        let c = read_credentials_file(path.to_str().unwrap()).unwrap();
        assert_eq!((c.access_key.expose(), c.secret_key.expose()), ("AKIAEXAMPLE", "s3cr3t\"quoted"));
        assert!(c.session_token.is_none());
        // Temporary keys travel with their session token.
        let mut temporary = settings("ASIAEXAMPLE", "s3cr3t");
        temporary.session_token = Some(Secret::new("FwoGZXIvYXdzEBYaDH"));
        std::fs::write(&path, credentials_file(&temporary).unwrap().expose()).unwrap();
        let c = read_credentials_file(path.to_str().unwrap()).unwrap();
        assert_eq!(c.session_token.map(|t| t.expose().to_string()).as_deref(), Some("FwoGZXIvYXdzEBYaDH"));
        std::fs::write(&path, "{\"access_key_id\": \"AKIAEXAMPLE\"").unwrap();
        let e = read_credentials_file(path.to_str().unwrap()).unwrap_err();
        assert!(e.contains("is not valid") && !e.contains("AKIAEXAMPLE"), "{e}");
    }
}
