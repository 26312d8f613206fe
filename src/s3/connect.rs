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
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider, StalledStreamProtectionConfig,
};
use std::time::Duration;

/// Region used when nothing names one (what S3-compatible servers expect).
pub const DEFAULT_REGION: &str = "us-east-1";
/// Environment variable that may hold a PEM CA certificate when the settings have none.
pub const CA_ENV: &str = "RKECTL_S3_CA_PEM";
/// Environment variable naming a PEM file of extra trusted roots (as the AWS CLI and SDKs
/// read it); they are trusted besides the system roots and any custom CA, by the client of
/// the process that sees the variable (the helpers on the nodes do not: give them a
/// private CA as custom_ca).
pub const CA_BUNDLE_ENV: &str = "AWS_CA_BUNDLE";

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
    /// AWS's own S3 (`s3.amazonaws.com`, `s3.<region>.amazonaws.com`, …), not a server that
    /// speaks its protocol.
    pub aws: bool,
    /// Bucket in the path (`host/bucket/key`) rather than in the host name.
    pub path_style: bool,
    /// The region an AWS regional endpoint names (`s3.eu-west-1.amazonaws.com`).
    pub region: Option<String>,
    /// For messages.
    pub display: String,
}

impl Endpoint {
    /// Whether the SDK may add checksums only where an operation requires them. Its default
    /// (a CRC32 on every upload, as an `x-amz-checksum-crc32` header or an aws-chunked
    /// trailer, and the same asked of downloads) is what AWS wants, but several
    /// S3-compatible stores reject those headers and trailers; rkectl checks every
    /// transfer end to end with its own BLAKE3 anyway.
    pub fn checksums_when_required(&self) -> bool {
        !self.aws
    }
}

/// Whether `host` (no port, lower case) is one of AWS's S3 endpoints, and the region it
/// names if any: `s3.amazonaws.com`, `s3.<region>.amazonaws.com`, `s3-<region>.amazonaws.com`
/// (legacy), `s3.dualstack.<region>.amazonaws.com`, `s3-fips.<region>.amazonaws.com`, and
/// the China partition's `*.amazonaws.com.cn`. Anything else (IP addresses, custom hosts) is
/// an S3-compatible server.
pub(crate) fn aws_host(host: &str) -> Option<Option<String>> {
    let labels = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let labels: Vec<&str> = labels.split('.').collect();
    if !labels.first().is_some_and(|l| *l == "s3" || l.starts_with("s3-")) {
        return None;
    }
    let is_region = |l: &str| {
        let parts: Vec<&str> = l.split('-').collect();
        parts.len() >= 3
            && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
            && parts[0].len() == 2
            && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
    };
    let region =
        labels.iter().rev().map(|l| l.strip_prefix("s3-").unwrap_or(l)).find(|l| is_region(l)).map(str::to_string);
    Some(region)
}

/// Interprets `endpoint`: empty or `s3.amazonaws.com` is AWS (regional endpoint from the
/// SDK); a bare host means `https://host`; an `http://` or `https://` URL is used as is.
/// AWS's endpoints use virtual-host addressing (`bucket.s3.<region>.amazonaws.com`; path
/// style is deprecated there); every other endpoint path style (`host/bucket/key`), which
/// every S3-compatible server supports and which needs neither wildcard DNS nor a wildcard
/// certificate (an IP address cannot carry a bucket name at all).
pub(crate) fn parse_endpoint(raw: &str) -> Result<Endpoint, S3Error> {
    let raw = raw.trim().trim_end_matches('/');
    let bad = |why: &str| S3Error::Settings { reason: format!("the endpoint `{raw}` {why}") };
    if raw.is_empty() || raw == DEFAULT_S3_ENDPOINT || raw == format!("https://{DEFAULT_S3_ENDPOINT}") {
        return Ok(Endpoint {
            url: None,
            aws: true,
            path_style: false,
            region: None,
            display: DEFAULT_S3_ENDPOINT.to_string(),
        });
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
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or(authority)
    } else {
        authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority)
    };
    let aws = aws_host(&host.to_ascii_lowercase());
    Ok(Endpoint {
        display: url.clone(),
        url: Some(url),
        aws: aws.is_some(),
        path_style: aws.is_none(),
        region: aws.flatten(),
    })
}

/// The region to sign for when the settings name none: the one an AWS regional endpoint
/// names, else `AWS_REGION` / `AWS_DEFAULT_REGION`, else the AWS profile's (`AWS_PROFILE`,
/// `AWS_CONFIG_FILE`; aws-config's environment and profile region providers). `None`
/// when nothing does (the client then uses [`DEFAULT_REGION`]).
///
/// The instance metadata service, the last link of aws-config's default region chain, is
/// not asked: off EC2 every lookup would wait for its timeouts, and a bucket in another
/// region than the one signed for is reported with its real region anyway.
pub async fn default_region(endpoint: &str) -> Option<String> {
    use aws_config::environment::EnvironmentVariableRegionProvider;
    use aws_config::meta::region::RegionProviderChain;
    use aws_config::profile::ProfileFileRegionProvider;
    if let Some(r) = parse_endpoint(endpoint).ok().and_then(|e| e.region) {
        return Some(r);
    }
    let chain = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(ProfileFileRegionProvider::new());
    chain.region().await.map(|r| r.as_ref().trim().to_string()).filter(|r| !r.is_empty())
}

/// The CA certificate(s) to trust besides the system roots: the settings', else the
/// environment's. `None` when neither is set (or only whitespace).
pub(crate) fn resolve_ca(settings: Option<&str>, env: Option<String>) -> Option<String> {
    settings.map(str::to_string).or(env).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The PEM roots of the file `AWS_CA_BUNDLE` names (`path`), checked; `None` when unset.
pub(crate) fn read_ca_bundle(path: Option<&std::ffi::OsStr>) -> Result<Option<String>, S3Error> {
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let shown = std::path::Path::new(path).display().to_string();
    let pem = std::fs::read_to_string(path).map_err(|e| S3Error::Settings {
        reason: format!("{CA_BUNDLE_ENV} names `{shown}`, which cannot be read: {e}"),
    })?;
    validate_ca(&pem, &format!("{CA_BUNDLE_ENV} (`{shown}`)"))?;
    Ok(Some(pem))
}

/// Checks that `pem` holds at least one parsable certificate (`what` names where it came
/// from). The SDK panics on bad PEM when it first connects, so this must be caught up front.
pub(crate) fn validate_ca(pem: &str, what: &str) -> Result<(), S3Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bad = |why: String| S3Error::Settings { reason: format!("{what} is not a usable PEM certificate: {why}") };
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
            settings.session_token.as_ref().map(|t| t.expose().to_string()),
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

/// `settings` with keys: its own, or, when it names none, those the AWS chain resolves to
/// here (environment with session token, profile, SSO, instance role), possibly temporary.
/// The helpers on the nodes get these: they cannot run the workstation's chain.
pub(crate) async fn resolve_keys(settings: &S3Settings) -> Result<S3Settings, S3Error> {
    if !settings.access_key.is_empty() || !settings.secret_key.is_empty() {
        return Ok(settings.clone());
    }
    let env = Environment::of_process(settings).await?;
    let region = chosen_region(settings, env.region);
    let endpoint = settings.endpoint.clone();
    let provider = credentials(settings, &Region::new(region))?;
    let c = provider.provide_credentials().await.map_err(|e| {
        use aws_credential_types::provider::error::CredentialsError;
        let fault = match &e {
            CredentialsError::CredentialsNotLoaded(_) => super::CredentialsFault::NoneFound,
            other => {
                let mut reason = other.to_string();
                let mut s = std::error::Error::source(other);
                while let Some(inner) = s {
                    reason.push_str(": ");
                    reason.push_str(&inner.to_string());
                    s = inner.source();
                }
                super::CredentialsFault::Provider { reason }
            }
        };
        S3Error::Credentials { endpoint, fault }
    })?;
    Ok(S3Settings {
        access_key: crate::secret::Secret::new(c.access_key_id()),
        secret_key: crate::secret::Secret::new(c.secret_access_key()),
        session_token: c.session_token().map(crate::secret::Secret::new),
        ..settings.clone()
    })
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

/// What the process environment adds to the settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Environment {
    /// [`CA_ENV`]'s PEM, used when the settings have no custom CA.
    pub ca_pem: Option<String>,
    /// [`CA_BUNDLE_ENV`]'s file, read and checked.
    pub ca_bundle: Option<String>,
    /// [`default_region`], used when the settings name no region.
    pub region: Option<String>,
}

impl Environment {
    /// The environment of this process, for a client of `settings`.
    pub async fn of_process(settings: &S3Settings) -> Result<Environment, S3Error> {
        let region = match settings.region.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() => None,
            _ => default_region(&settings.endpoint).await,
        };
        Ok(Environment {
            ca_pem: std::env::var(CA_ENV).ok(),
            ca_bundle: read_ca_bundle(std::env::var_os(CA_BUNDLE_ENV).as_deref())?,
            region,
        })
    }
}

/// Builds the SDK client and the error classifier for `settings`.
pub(crate) fn build(
    settings: &S3Settings,
    env: Environment,
) -> Result<(aws_sdk_s3::Client, Classifier, Endpoint), S3Error> {
    if settings.bucket.trim().is_empty() {
        return Err(S3Error::Settings { reason: "the bucket name is empty".into() });
    }
    let endpoint = parse_endpoint(&settings.endpoint)?;
    let region_name = chosen_region(settings, env.region);
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
    if endpoint.checksums_when_required() {
        config = config
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    let custom_ca = resolve_ca(settings.custom_ca.as_deref(), env.ca_pem);
    if let Some(pem) = &custom_ca {
        validate_ca(pem, "custom_ca")?;
    }
    // Always our own client: the SDK's default trusts only the machine's store, and the
    // etcd image the agent runs in has none.
    use aws_smithy_http_client::tls::{self, TlsContext, rustls_provider::CryptoMode};
    let context = TlsContext::builder()
        .with_trust_store(super::roots::trust_store(custom_ca.into_iter().chain(env.ca_bundle)))
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

/// The region: the flag's or cluster.yml's, else the AWS environment's, else `us-east-1`.
fn chosen_region(settings: &S3Settings, from_environment: Option<String>) -> String {
    let given = settings.region.as_deref().map(str::trim).filter(|r| !r.is_empty());
    given.map(str::to_string).or(from_environment).unwrap_or_else(|| DEFAULT_REGION.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_endpoints_are_virtual_hosted_others_path_style() {
        for (raw, region) in [
            ("s3.amazonaws.com", None),
            ("https://s3.amazonaws.com", None),
            ("s3.eu-west-1.amazonaws.com", Some("eu-west-1")),
            ("https://s3.us-gov-west-1.amazonaws.com", Some("us-gov-west-1")),
            ("s3-eu-west-1.amazonaws.com", Some("eu-west-1")),
            ("s3.dualstack.ap-southeast-2.amazonaws.com:443", Some("ap-southeast-2")),
            ("S3-FIPS.us-east-2.AMAZONAWS.COM", Some("us-east-2")),
            ("s3.cn-north-1.amazonaws.com.cn", Some("cn-north-1")),
            ("s3-external-1.amazonaws.com", None),
        ] {
            let e = parse_endpoint(raw).unwrap();
            assert!(e.aws && !e.path_style, "{raw}: {e:?}");
            assert_eq!(e.region.as_deref(), region, "{raw}");
            assert!(!e.checksums_when_required(), "{raw}: AWS keeps the SDK's checksums");
        }
        for raw in [
            "http://10.77.0.1:9000",
            "127.0.0.1:9000",
            "[::1]:9000",
            "http://[fd00::1]",
            "minio.example.com",
            "https://storage.googleapis.com",
            "s3.example.com",
            "s3.amazonaws.com.evil.example",
            "ec2.us-east-1.amazonaws.com",
            "mys3.eu-west-1.amazonaws.com.example",
        ] {
            let e = parse_endpoint(raw).unwrap();
            assert!(!e.aws && e.path_style && e.region.is_none(), "{raw}: {e:?}");
            assert!(e.checksums_when_required(), "{raw}");
        }
    }

    #[test]
    fn checksums_only_when_required_off_aws() {
        let settings = |endpoint: &str| S3Settings {
            endpoint: endpoint.into(),
            bucket: "b".into(),
            region: None,
            folder: None,
            custom_ca: None,
            access_key: crate::secret::Secret::new("AKID"),
            secret_key: crate::secret::Secret::new("secret"),
            session_token: None,
        };
        let (client, _, _) = build(&settings("http://127.0.0.1:9000"), Environment::default()).unwrap();
        let config = client.config();
        assert_eq!(config.request_checksum_calculation(), Some(&RequestChecksumCalculation::WhenRequired));
        assert_eq!(config.response_checksum_validation(), Some(&ResponseChecksumValidation::WhenRequired));
        let (client, _, _) = build(&settings("s3.amazonaws.com"), Environment::default()).unwrap();
        let config = client.config();
        assert_ne!(config.request_checksum_calculation(), Some(&RequestChecksumCalculation::WhenRequired));
        assert_ne!(config.response_checksum_validation(), Some(&ResponseChecksumValidation::WhenRequired));
    }

    #[test]
    fn region_from_settings_then_endpoint_then_environment_then_default() {
        let mut s = S3Settings {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "b".into(),
            region: Some(" eu-central-1 ".into()),
            folder: None,
            custom_ca: None,
            access_key: crate::secret::Secret::new("AKID"),
            secret_key: crate::secret::Secret::new("secret"),
            session_token: None,
        };
        let env = |r: &str| Environment { region: Some(r.into()), ..Environment::default() };
        let region = |s: &S3Settings, e: Environment| build(s, e).unwrap().1.region;
        assert_eq!(region(&s, env("ap-south-1")), "eu-central-1");
        s.region = Some("  ".into());
        assert_eq!(region(&s, env("ap-south-1")), "ap-south-1");
        assert_eq!(region(&s, Environment::default()), DEFAULT_REGION);
        // A regional AWS endpoint names its region before the environment does.
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(default_region("s3.eu-west-3.amazonaws.com")).as_deref(), Some("eu-west-3"));
    }

    #[test]
    fn ca_bundle_is_read_and_checked() {
        assert_eq!(read_ca_bundle(None).unwrap(), None);
        assert_eq!(read_ca_bundle(Some(std::ffi::OsStr::new(""))).unwrap(), None);
        let e = read_ca_bundle(Some(std::ffi::OsStr::new("/nonexistent/rkectl-ca.pem"))).unwrap_err();
        assert!(e.to_string().contains("AWS_CA_BUNDLE names `/nonexistent/rkectl-ca.pem`"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let e = read_ca_bundle(Some(bad.as_os_str())).unwrap_err();
        assert!(e.to_string().contains("AWS_CA_BUNDLE"), "{e}");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".to_string()]).unwrap().self_signed(&key).unwrap();
        let good = dir.path().join("good.pem");
        std::fs::write(&good, cert.pem()).unwrap();
        assert_eq!(read_ca_bundle(Some(good.as_os_str())).unwrap(), Some(cert.pem()));
    }

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
        assert!(validate_ca("not a certificate", "custom_ca").is_err());
        assert!(validate_ca("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "custom_ca").is_err());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".to_string()]).unwrap().self_signed(&key).unwrap();
        validate_ca(&cert.pem(), "custom_ca").unwrap();
    }
}
