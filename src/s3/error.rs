//! S3 failures as sentences a user can act on, and how SDK errors map onto them.
//!
//! The SDK reports the same fault in several shapes (a service error code, an HTTP status
//! without a body for HEAD requests, a connector error with an `io::Error` deep in its
//! source chain). [`Classifier`] folds them into [`S3Error`], naming the setting to fix.
//! Every text that came from the server or the SDK passes through [`redact`], since a
//! server may quote the access key back (s3s-fs does, in `NotSignedUp`).

use crate::secret::{Secret, redact};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use std::error::Error as StdError;
use std::fmt;
use std::io;

/// What is wrong with the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsFault {
    /// The server does not know the access key (`InvalidAccessKeyId`; s3s-fs: `NotSignedUp`).
    UnknownAccessKey,
    /// The access key is known but the signature does not match: the secret key is wrong.
    WrongSecretKey,
    /// Temporary credentials expired or their session token is invalid.
    Expired { code: String },
    /// No keys in the settings and none found by the AWS chain (environment, profiles, …).
    NoneFound,
    /// The AWS credentials chain failed for another reason.
    Provider { reason: String },
}

impl fmt::Display for CredentialsFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsFault::UnknownAccessKey => {
                f.write_str("the access key is not known to the server (InvalidAccessKeyId); check the access key")
            }
            CredentialsFault::WrongSecretKey => f.write_str(
                "the request signature does not match (SignatureDoesNotMatch), so the secret key \
                 is wrong for this access key; check the secret key",
            ),
            CredentialsFault::Expired { code } => {
                write!(f, "the credentials have expired or their session token is invalid ({code}); renew them")
            }
            CredentialsFault::NoneFound => f.write_str(
                "no access_key/secret_key are configured and the AWS chain found none \
                 (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws profiles, instance role)",
            ),
            CredentialsFault::Provider { reason } => {
                write!(f, "the AWS credentials chain failed: {reason}")
            }
        }
    }
}

/// Why an S3 operation failed, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The settings cannot work (bad endpoint URL, bad CA certificate, half a key pair).
    #[error("the S3 settings are not usable: {reason}")]
    Settings { reason: String },
    /// The server refused the credentials.
    #[error("S3 at {endpoint} refused the credentials: {fault}")]
    Credentials { endpoint: String, fault: CredentialsFault },
    /// The bucket does not exist.
    #[error("the bucket `{bucket}` does not exist at {endpoint}; create it or correct the bucket name")]
    NoBucket { bucket: String, endpoint: String },
    /// No connection could be made (refused, timed out, name not resolved).
    #[error(
        "cannot reach S3 at {endpoint}: {reason}; check the endpoint address, the network and \
         that the S3 service is up"
    )]
    Unreachable { endpoint: String, reason: String },
    /// The TLS handshake failed, usually an untrusted certificate.
    #[error(
        "TLS with S3 at {endpoint} failed: {reason}; if the endpoint uses a private CA, give its \
         certificate as custom_ca (or in RKECTL_S3_CA_PEM), and use http:// only for a plain-HTTP server"
    )]
    Tls { endpoint: String, reason: String },
    /// The credentials are valid but lack a permission.
    #[error(
        "S3 at {endpoint} denied {action} in bucket `{bucket}` (AccessDenied): the credentials are \
         valid but lack this permission; grant it in the bucket or IAM policy"
    )]
    Denied { action: &'static str, bucket: String, endpoint: String },
    /// The bucket lives in another region than the configured one.
    #[error("the bucket `{bucket}` is not in region `{region}`{}; set region accordingly", in_region(.bucket_region))]
    WrongRegion { bucket: String, region: String, bucket_region: Option<String> },
    /// The object does not exist.
    #[error("there is no object `{key}` in bucket `{bucket}`")]
    NotFound { bucket: String, key: String },
    /// The connection broke or timed out after it was made.
    #[error("the connection to S3 at {endpoint} failed during {action}: {reason}")]
    Transfer { action: &'static str, endpoint: String, reason: String },
    /// A download ended early.
    #[error("the download of `{key}` stopped after {received} of {expected} bytes")]
    Truncated { key: String, received: u64, expected: u64 },
    /// Any other error the server returned.
    #[error("S3 at {endpoint} refused {action}: {code} (HTTP {status}): {message}")]
    Server { action: &'static str, endpoint: String, code: String, status: u16, message: String },
    /// Reading the data to upload failed.
    #[error("reading the data to upload failed after {offset} bytes: {source}")]
    Read {
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// Writing downloaded data failed.
    #[error("writing the downloaded data failed after {offset} bytes: {source}")]
    Write {
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// A manifest could not be read or is of an unknown format.
    #[error("the manifest `{key}` is not valid: {reason}")]
    BadManifest { key: String, reason: String },
    /// The name would collide with a manifest key.
    #[error("`{name}` cannot be stored in S3: names ending in `.rkectl.json` are reserved for manifests")]
    ReservedName { name: String },
    /// The object is larger than a multipart upload of our part size can hold.
    #[error("the data is larger than {limit} bytes, the most one upload can hold")]
    TooLarge { limit: u64 },
    /// A bug or a panic in a transfer task.
    #[error("internal error in the S3 client: {0}")]
    Internal(String),
}

fn in_region(bucket_region: &Option<String>) -> String {
    match bucket_region {
        Some(r) => format!(" but in `{r}`"),
        None => String::new(),
    }
}

impl S3Error {
    /// Whether trying again later may succeed (network faults, server overload).
    pub fn is_transient(&self) -> bool {
        match self {
            S3Error::Unreachable { .. } | S3Error::Transfer { .. } | S3Error::Truncated { .. } => true,
            S3Error::Server { status, code, .. } => {
                *status >= 500
                    || matches!(
                        code.as_str(),
                        "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" | "RequestTimeTooSkewed"
                    )
            }
            S3Error::Credentials { fault: CredentialsFault::Provider { .. }, .. } => true,
            _ => false,
        }
    }
}

/// Turns SDK errors into [`S3Error`] for one client (its endpoint, bucket and secrets).
#[derive(Clone)]
pub(crate) struct Classifier {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub secrets: [Secret; 2],
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier").field("endpoint", &self.endpoint).field("bucket", &self.bucket).finish()
    }
}

/// Messages of hyper/SDK wrappers that add nothing for a user.
const NOISE: &[&str] = &[
    "dispatch failure",
    "io error",
    "other",
    "client error (Connect)",
    "client error (SendRequest)",
    "error trying to connect",
    "failed to construct request",
    "response error",
    "timeout",
];

impl Classifier {
    /// Removes the keys from a text that came from outside.
    pub fn clean(&self, text: &str) -> String {
        redact(text, &[&self.secrets[0], &self.secrets[1]])
    }

    /// The error's source chain, without wrapper noise and duplicates, redacted.
    pub fn chain(&self, err: &(dyn StdError + 'static)) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
        while let Some(e) = cur {
            let msg = e.to_string();
            let msg = msg.trim();
            if !msg.is_empty() && !NOISE.contains(&msg) && !parts.iter().any(|p| p.contains(msg)) {
                parts.push(msg.to_string());
            }
            cur = e.source();
        }
        if parts.is_empty() {
            parts.push(err.to_string());
        }
        self.clean(&parts.join(": "))
    }

    /// Maps an SDK error of operation `action` (on object `key`, if any).
    pub fn sdk<E>(&self, action: &'static str, key: Option<&str>, err: SdkError<E>) -> S3Error
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        if let Some(fault) = credentials_fault(&err) {
            return self.credentials(fault);
        }
        match &err {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let bucket_region = se.raw().headers().get("x-amz-bucket-region").map(|r| self.clean(r));
                let code = se.err().code().map(str::to_string);
                let message = se.err().message().map(|m| self.clean(m)).unwrap_or_default();
                self.service(action, key, status, code, message, bucket_region)
            }
            SdkError::DispatchFailure(df) => {
                let reason = self.chain(&err);
                if let Some(ce) = df.as_connector_error() {
                    let text = reason.to_ascii_lowercase();
                    if is_tls(&text) {
                        return S3Error::Tls { endpoint: self.endpoint.clone(), reason };
                    }
                    if is_connect(&text) || (ce.is_timeout() && text.contains("connect")) {
                        return S3Error::Unreachable { endpoint: self.endpoint.clone(), reason };
                    }
                }
                S3Error::Transfer { action, endpoint: self.endpoint.clone(), reason }
            }
            SdkError::TimeoutError(_) => {
                S3Error::Transfer { action, endpoint: self.endpoint.clone(), reason: "the operation timed out".into() }
            }
            SdkError::ResponseError(_) => {
                S3Error::Transfer { action, endpoint: self.endpoint.clone(), reason: self.chain(&err) }
            }
            SdkError::ConstructionFailure(_) => S3Error::Internal(self.chain(&err)),
            _ => S3Error::Internal(self.chain(&err)),
        }
    }

    /// A credentials error at this endpoint.
    pub fn credentials(&self, fault: CredentialsFault) -> S3Error {
        let fault = match fault {
            CredentialsFault::Provider { reason } => CredentialsFault::Provider { reason: self.clean(&reason) },
            f => f,
        };
        S3Error::Credentials { endpoint: self.endpoint.clone(), fault }
    }

    /// Maps an error response. HEAD responses carry no body, hence no code: the status decides.
    fn service(
        &self,
        action: &'static str,
        key: Option<&str>,
        status: u16,
        code: Option<String>,
        message: String,
        bucket_region: Option<String>,
    ) -> S3Error {
        let endpoint = self.endpoint.clone();
        let bucket = self.bucket.clone();
        let not_found = |key: Option<&str>| match key {
            Some(k) => S3Error::NotFound { bucket: bucket.clone(), key: k.to_string() },
            None => S3Error::NoBucket { bucket: bucket.clone(), endpoint: endpoint.clone() },
        };
        let wrong_region = || S3Error::WrongRegion {
            bucket: bucket.clone(),
            region: self.region.clone(),
            bucket_region: bucket_region.clone(),
        };
        match code.as_deref() {
            Some("InvalidAccessKeyId") | Some("NotSignedUp") => self.credentials(CredentialsFault::UnknownAccessKey),
            Some("SignatureDoesNotMatch") => self.credentials(CredentialsFault::WrongSecretKey),
            Some(c @ ("ExpiredToken" | "InvalidToken" | "TokenRefreshRequired")) => {
                self.credentials(CredentialsFault::Expired { code: c.to_string() })
            }
            Some("NoSuchBucket") => S3Error::NoBucket { bucket, endpoint },
            Some("NoSuchKey") => S3Error::NotFound { bucket, key: key.unwrap_or_default().to_string() },
            Some("AccessDenied" | "AllAccessDisabled") => S3Error::Denied { action, bucket, endpoint },
            Some("PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException") => {
                wrong_region()
            }
            Some(code) => S3Error::Server { action, endpoint, code: code.to_string(), status, message },
            None => match status {
                404 => not_found(key),
                403 => S3Error::Denied { action, bucket, endpoint },
                301 => wrong_region(),
                _ => S3Error::Server { action, endpoint, code: "(no error code)".into(), status, message },
            },
        }
    }
}

/// A credentials-chain failure anywhere in the error's sources.
fn credentials_fault<E: StdError + 'static>(err: &SdkError<E>) -> Option<CredentialsFault> {
    use aws_credential_types::provider::error::CredentialsError;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(ce) = e.downcast_ref::<CredentialsError>() {
            return Some(match ce {
                CredentialsError::CredentialsNotLoaded(_) => CredentialsFault::NoneFound,
                other => {
                    let mut reason = other.to_string();
                    let mut s = other.source();
                    while let Some(inner) = s {
                        reason.push_str(": ");
                        reason.push_str(&inner.to_string());
                        s = inner.source();
                    }
                    CredentialsFault::Provider { reason }
                }
            });
        }
        cur = e.source();
    }
    None
}

/// Whether a (lower-cased) error chain is a TLS failure.
fn is_tls(text: &str) -> bool {
    ["certificate", "tls handshake", "invalidcontenttype", "corrupt message", "peer is incompatible"]
        .iter()
        .any(|s| text.contains(s))
}

/// Whether a (lower-cased) error chain says no connection was made.
fn is_connect(text: &str) -> bool {
    [
        "tcp connect error",
        "connection refused",
        "dns error",
        "failed to lookup address",
        "no route to host",
        "network is unreachable",
        "host is unreachable",
        "connect timeout",
    ]
    .iter()
    .any(|s| text.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier() -> Classifier {
        Classifier {
            endpoint: "http://127.0.0.1:9".into(),
            bucket: "b".into(),
            region: "us-east-1".into(),
            secrets: [Secret::new("AKIDEXAMPLE"), Secret::new("s3cr3t-key-value")],
        }
    }

    #[test]
    fn codes_name_the_problem() {
        let c = classifier();
        let e = c.service("list", None, 403, Some("SignatureDoesNotMatch".into()), String::new(), None);
        assert!(matches!(e, S3Error::Credentials { fault: CredentialsFault::WrongSecretKey, .. }));
        assert!(e.to_string().contains("secret key is wrong"), "{e}");
        let e = c.service("list", None, 403, Some("NotSignedUp".into()), String::new(), None);
        assert!(matches!(e, S3Error::Credentials { fault: CredentialsFault::UnknownAccessKey, .. }));
        let e = c.service("list", None, 404, Some("NoSuchBucket".into()), String::new(), None);
        assert!(matches!(e, S3Error::NoBucket { .. }));
        let e = c.service("download", Some("f/x"), 404, None, String::new(), None);
        assert!(matches!(e, S3Error::NotFound { ref key, .. } if key == "f/x"));
        let e = c.service("list", None, 301, None, String::new(), Some("eu-west-1".into()));
        assert!(e.to_string().contains("but in `eu-west-1`"), "{e}");
        let e = c.service("upload", None, 503, Some("SlowDown".into()), "slow".into(), None);
        assert!(e.is_transient());
        assert!(!c.service("list", None, 403, Some("AccessDenied".into()), String::new(), None).is_transient());
    }

    #[test]
    fn texts_are_redacted() {
        let c = classifier();
        let e = c.service("list", None, 400, Some("Weird".into()), c.clean("key AKIDEXAMPLE s3cr3t-key-value"), None);
        let text = e.to_string();
        assert!(!text.contains("AKIDEXAMPLE") && !text.contains("s3cr3t"), "{text}");
    }
}
