//! From [`S3Settings`] to a configured SDK client: endpoint, addressing style, region,
//! credentials, trust roots, timeouts and retries.

use super::error::{Classifier, S3Error};
use crate::config::S3Settings;
use crate::config::model::DEFAULT_S3_ENDPOINT;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::provider::{self, ProvideCredentials};
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, SharedCredentialsProvider, StalledStreamProtectionConfig,
};
use std::time::Duration;

/// Region used when the settings name none (what S3-compatible servers expect).
pub const DEFAULT_REGION: &str = "us-east-1";
/// Environment variable that may hold a PEM CA certificate when the settings have none.
pub const CA_ENV: &str = "RKECTL_S3_CA_PEM";

/// A failed connection attempt is given up after this long; the SDK then retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time from sending a request to the response headers. It includes sending the body (one
/// 16 MiB part), so it is generous: a part still fits at ~60 KB/s. Stalled bodies are
/// caught sooner by the SDK's stalled-stream protection.
const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Attempts per request (the first plus retries) for throttling, 5xx and connection faults.
const MAX_ATTEMPTS: u32 = 4;
/// A body that moves no byte for this long is cut off (upload or download).
const STALL_GRACE: Duration = Duration::from_secs(30);

/// Where and how to reach S3, derived from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The URL to use, or `None` for AWS's own regional endpoints.
    pub url: Option<String>,
    /// Bucket in the path (`host/bucket/key`) rather than in the host name.
    pub path_style: bool,
    /// For messages.
    pub display: String,
}

/// Interprets `endpoint`: empty or `s3.amazonaws.com` is AWS (virtual-host addressing,
/// regional endpoint from the SDK); a bare host means `https://host`; an `http://` or
/// `https://` URL is used as is. Custom endpoints use path-style addressing, which every
/// S3-compatible server supports and which needs no wildcard DNS.
pub(crate) fn parse_endpoint(raw: &str) -> Result<Endpoint, S3Error> {
    let raw = raw.trim().trim_end_matches('/');
    let bad = |why: &str| S3Error::Settings { reason: format!("the endpoint `{raw}` {why}") };
    if raw.is_empty() || raw == DEFAULT_S3_ENDPOINT || raw == format!("https://{DEFAULT_S3_ENDPOINT}") {
        return Ok(Endpoint { url: None, path_style: false, display: DEFAULT_S3_ENDPOINT.to_string() });
    }
    let url = if let Some((scheme, _)) = raw.split_once("://") {
        if scheme != "http" && scheme != "https" {
            return Err(bad("must start with http:// or https:// (or be a bare host name)"));
        }
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.starts_with(':') {
        return Err(bad("has no host name"));
    }
    if authority.contains('@') {
        return Err(bad("must not contain user information; give the keys as access_key/secret_key"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains spaces or control characters"));
    }
    if let Some((_, port)) = authority.rsplit_once(':')
        && !authority.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(bad("has an invalid port"));
    }
    // AWS's own regional endpoints keep virtual-host addressing (path style is deprecated there).
    let host = authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority);
    let path_style = !host.ends_with(".amazonaws.com");
    Ok(Endpoint { display: url.clone(), url: Some(url), path_style })
}

/// The CA certificate(s) to trust besides the system roots: the settings', else the
/// environment's. `None` when neither is set (or only whitespace).
pub(crate) fn resolve_ca(settings: Option<&str>, env: Option<String>) -> Option<String> {
    settings.map(str::to_string).or(env).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Checks that `pem` holds at least one parsable certificate. The SDK panics on bad PEM
/// when it first connects, so this must be caught up front.
pub(crate) fn validate_ca(pem: &str) -> Result<(), S3Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bad = |why: String| S3Error::Settings { reason: format!("custom_ca is not a usable PEM certificate: {why}") };
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no `-----BEGIN CERTIFICATE-----` block found".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    Ok(())
}

/// The credentials provider: the settings' keys, else the standard AWS chain.
pub(crate) fn credentials(settings: &S3Settings, region: &Region) -> Result<SharedCredentialsProvider, S3Error> {
    match (settings.access_key.is_empty(), settings.secret_key.is_empty()) {
        (false, false) => Ok(SharedCredentialsProvider::new(Credentials::new(
            settings.access_key.expose(),
            settings.secret_key.expose(),
            None,
            None,
            "rkectl-settings",
        ))),
        (true, true) => Ok(SharedCredentialsProvider::new(LazyDefaultChain {
            region: region.clone(),
            chain: tokio::sync::OnceCell::new(),
        })),
        (false, true) => Err(S3Error::Settings {
            reason: "access_key is set but secret_key is empty; give both, or neither to use the AWS \
                     credentials chain"
                .into(),
        }),
        (true, false) => Err(S3Error::Settings {
            reason: "secret_key is set but access_key is empty; give both, or neither to use the AWS \
                     credentials chain"
                .into(),
        }),
    }
}

/// The AWS default chain (env, profiles, web identity, ECS, IMDS), built on first use:
/// building it is async, and `S3Client::new` is not.
#[derive(Debug)]
struct LazyDefaultChain {
    region: Region,
    chain: tokio::sync::OnceCell<DefaultCredentialsChain>,
}

impl ProvideCredentials for LazyDefaultChain {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            let chain =
                self.chain.get_or_init(|| DefaultCredentialsChain::builder().region(self.region.clone()).build()).await;
            chain.provide_credentials().await
        })
    }
}

/// Builds the SDK client and the error classifier for `settings`.
pub(crate) fn build(
    settings: &S3Settings,
    ca_env: Option<String>,
) -> Result<(aws_sdk_s3::Client, Classifier, Endpoint), S3Error> {
    if settings.bucket.trim().is_empty() {
        return Err(S3Error::Settings { reason: "the bucket name is empty".into() });
    }
    let endpoint = parse_endpoint(&settings.endpoint)?;
    let region_name =
        settings.region.as_deref().map(str::trim).filter(|r| !r.is_empty()).unwrap_or(DEFAULT_REGION).to_string();
    let region = Region::new(region_name.clone());
    let creds = credentials(settings, &region)?;

    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(creds)
        .force_path_style(endpoint.path_style)
        .timeout_config(TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).read_timeout(READ_TIMEOUT).build())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .stalled_stream_protection(StalledStreamProtectionConfig::enabled().grace_period(STALL_GRACE).build());
    if let Some(url) = &endpoint.url {
        config = config.endpoint_url(url);
    }
    let custom_ca = resolve_ca(settings.custom_ca.as_deref(), ca_env);
    if let Some(pem) = &custom_ca {
        validate_ca(pem)?;
    }
    // Always our own client: the SDK's default trusts only the machine's store, and the
    // etcd image the agent runs in has none.
    use aws_smithy_http_client::tls::{self, TlsContext, rustls_provider::CryptoMode};
    let context = TlsContext::builder()
        .with_trust_store(super::roots::trust_store(custom_ca.as_deref()))
        .build()
        .map_err(|e| S3Error::Settings { reason: format!("TLS roots: {e}") })?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https();
    config = config.http_client(http);

    let classifier = Classifier {
        endpoint: endpoint.display.clone(),
        bucket: settings.bucket.clone(),
        region: region_name,
        secrets: [settings.access_key.clone(), settings.secret_key.clone()],
    };
    Ok((aws_sdk_s3::Client::from_conf(config.build()), classifier, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let aws = parse_endpoint("s3.amazonaws.com").unwrap();
        assert_eq!(aws.url, None);
        assert_eq!(parse_endpoint("").unwrap().url, None);
        let bare = parse_endpoint("minio.lab:9000").unwrap();
        assert_eq!(bare.url.as_deref(), Some("https://minio.lab:9000"));
        assert!(bare.path_style);
        let http = parse_endpoint("http://127.0.0.1:8014/").unwrap();
        assert_eq!(http.url.as_deref(), Some("http://127.0.0.1:8014"));
        assert!(http.path_style);
        let regional = parse_endpoint("s3.eu-west-1.amazonaws.com").unwrap();
        assert!(!regional.path_style);
        assert!(parse_endpoint("ftp://x").is_err());
        assert!(parse_endpoint("http://").is_err());
        assert!(parse_endpoint("http://a:b@host").is_err());
        assert!(parse_endpoint("host:notaport").is_err());
        assert!(parse_endpoint("[::1]:9000").unwrap().path_style);
    }

    #[test]
    fn ca_comes_from_settings_then_env() {
        assert_eq!(resolve_ca(Some("A"), Some("B".into())).as_deref(), Some("A"));
        assert_eq!(resolve_ca(None, Some(" B\n".into())).as_deref(), Some("B"));
        assert_eq!(resolve_ca(None, Some("  ".into())), None);
        assert_eq!(resolve_ca(None, None), None);
    }

    #[test]
    fn bad_ca_is_refused_before_the_sdk_panics() {
        assert!(validate_ca("not a certificate").is_err());
        assert!(validate_ca("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".to_string()]).unwrap().self_signed(&key).unwrap();
        validate_ca(&cert.pem()).unwrap();
    }
}
