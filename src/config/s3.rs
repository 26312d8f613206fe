//! S3 settings resolved in one place: [`S3Settings::resolve`] takes what the command line
//! says ([`S3Flags`]), cluster.yml's `s3backupconfig` and the environment it runs in
//! ([`S3Environment`]), with one precedence for every setting:
//!
//! 1. a flag (`--bucket-name`, `--s3-endpoint`, `--access-key`, `--s3-endpoint-ca`…);
//! 2. cluster.yml's `services.etcd.backup_config.s3backupconfig`;
//! 3. the environment: the region for the endpoint (AWS regional endpoints,
//!    `AWS_REGION`, the profile's), the keys and CA a helper on a node is handed;
//! 4. the endpoint defaults to AWS's; keys left empty go to the S3 client's AWS credentials
//!    chain on the machine that connects.
//!
//! A new S3 option is one field of [`S3Settings`], one flag, one line here, and its use.

use super::model::{S3Settings, S3Target};
use super::validate::flags::{BadInput, read_secret_file};
use crate::secret::Secret;
use std::path::PathBuf;

/// What the command line says about S3 (the library's view of the flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Flags {
    /// `--s3`: use S3.
    pub s3: bool,
    pub endpoint: Option<String>,
    pub access_key: Option<String>,
    /// `--secret-key`: the key on the command line (see [`S3Flags::command_line_secret_warning`]).
    pub secret_key: Option<String>,
    pub secret_key_file: Option<PathBuf>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub folder: Option<String>,
    /// `--s3-endpoint-ca`: a PEM file.
    pub endpoint_ca: Option<PathBuf>,
}

/// Which settings an action takes.
#[derive(Debug, Clone, Copy)]
pub enum S3Use<'a> {
    /// Only with `--s3` (RKE's delete and prune); none without it.
    Flags,
    /// With `--s3` from the flags, else cluster.yml's `s3backupconfig` alone (RKE's one-time
    /// save and restore, and the listing).
    FlagsOrConfigured,
    /// The place a plan was made for (a saved plan, an unfinished apply): only the keys
    /// and the CA are resolved.
    Target(&'a S3Target),
}

/// What the environment adds where neither a flag nor cluster.yml says.
pub trait S3Environment {
    /// The region to sign for at `endpoint` (`None`: the S3 client's default).
    fn region(&self, endpoint: &str) -> Option<String>;
    /// Keys handed over by the environment itself (access, secret, session token); `None`
    /// leaves them to the S3 client's credentials chain.
    fn keys(&self) -> Result<Option<(Secret, Secret, Option<Secret>)>, BadInput>;
    /// A CA to trust for the endpoint.
    fn custom_ca(&self) -> Option<String>;
}

impl S3Settings {
    /// The S3 settings of an action: flags over `configured` (cluster.yml's
    /// `s3backupconfig`) over `env`; `None` when the action does not use S3.
    pub fn resolve(
        wanted: S3Use<'_>,
        flags: &S3Flags,
        configured: Option<&S3Settings>,
        env: &dyn S3Environment,
    ) -> Result<Option<S3Settings>, BadInput> {
        let target = match wanted {
            S3Use::Target(target) => target.clone(),
            _ if flags.s3 => flags.target(configured, env)?,
            _ if flags.names_a_place() => {
                return Err(BadInput::new(
                    "S3 flags were given without --s3",
                    "add --s3 to use S3, or drop the S3 flags",
                ));
            }
            S3Use::Flags => return Ok(None),
            S3Use::FlagsOrConfigured => match configured {
                Some(c) => S3Target { region: c.region.clone().or_else(|| env.region(&c.endpoint)), ..c.target() },
                None => return Ok(None),
            },
        };
        let custom_ca = match &flags.endpoint_ca {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                BadInput::new(
                    format!("cannot read --s3-endpoint-ca {}: {e}", p.display()),
                    "give the path of a PEM file",
                )
            })?),
            None => configured.and_then(|c| c.custom_ca.clone()).or_else(|| env.custom_ca()),
        };
        let (access_key, secret_key, session_token) = flags.keys(configured, env)?;
        let S3Target { endpoint, bucket, region, folder } = target;
        Ok(Some(S3Settings { endpoint, bucket, region, folder, custom_ca, access_key, secret_key, session_token }))
    }
}

impl S3Flags {
    /// Whether a flag names where in S3 (which only `--s3` may).
    fn names_a_place(&self) -> bool {
        self.endpoint.is_some()
            || self.bucket.is_some()
            || self.region.is_some()
            || self.folder.is_some()
            || self.endpoint_ca.is_some()
    }

    /// Where `--s3` points: the flags over `configured`, the default endpoint, the
    /// environment's region for the endpoint.
    fn target(&self, configured: Option<&S3Settings>, env: &dyn S3Environment) -> Result<S3Target, BadInput> {
        let bucket =
            self.bucket.clone().or_else(|| configured.map(|c| c.bucket.clone())).filter(|b| !b.trim().is_empty());
        let Some(bucket) = bucket else {
            return Err(BadInput::new(
                "--s3 needs a bucket: no --bucket-name and no services.etcd.backup_config.s3backupconfig.bucket_name",
                "pass --bucket-name <bucket>",
            ));
        };
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| configured.map(|c| c.endpoint.clone()))
            .unwrap_or_else(|| super::DEFAULT_S3_ENDPOINT.into());
        let region =
            self.region.clone().or_else(|| configured.and_then(|c| c.region.clone())).or_else(|| env.region(&endpoint));
        let folder = self.folder.clone().or_else(|| configured.and_then(|c| c.folder.clone()));
        Ok(S3Target { endpoint, bucket, region, folder })
    }

    /// The keys: flags over `configured` over the environment's; empty ones leave the AWS
    /// credentials chain to the S3 client. The secret key comes from `--secret-key-file`
    /// or `--secret-key`.
    fn keys(
        &self,
        configured: Option<&S3Settings>,
        env: &dyn S3Environment,
    ) -> Result<(Secret, Secret, Option<Secret>), BadInput> {
        let (env_access, env_secret, session_token) = match env.keys()? {
            Some((a, s, t)) => (Some(a), Some(s), t),
            None => (None, None, None),
        };
        let access_key = self
            .access_key
            .clone()
            .map(Secret::new)
            .or_else(|| configured.map(|c| c.access_key.clone()))
            .or(env_access)
            .unwrap_or_default();
        let secret_key = match &self.secret_key_file {
            Some(p) => read_secret_file(p)?,
            None => self
                .secret_key
                .clone()
                .map(Secret::new)
                .or_else(|| configured.map(|c| c.secret_key.clone()))
                .or(env_secret)
                .unwrap_or_default(),
        };
        Ok((access_key, secret_key, session_token))
    }

    /// Where the access key and the secret key come from, as [`S3Settings::resolve`] takes
    /// them with `configured`.
    pub fn key_sources(&self, configured: Option<&S3Settings>) -> (KeyFrom, KeyFrom) {
        let from_configured = |key: &'static str, secret: Option<&Secret>| match secret {
            Some(s) if !s.is_empty() => KeyFrom::ClusterYml(key),
            _ => KeyFrom::Chain,
        };
        let access = match &self.access_key {
            Some(_) => KeyFrom::Flag("--access-key"),
            None => from_configured("access_key", configured.map(|c| &c.access_key)),
        };
        let secret = match (&self.secret_key_file, &self.secret_key) {
            (Some(p), _) => KeyFrom::File(p.clone()),
            (None, Some(_)) => KeyFrom::Flag("--secret-key"),
            (None, None) => from_configured("secret_key", configured.map(|c| &c.secret_key)),
        };
        (access, secret)
    }

    /// A sentence naming where the S3 keys came from, for the help of an error about them.
    pub fn key_sources_help(&self, configured: Option<&S3Settings>) -> String {
        match self.key_sources(configured) {
            (KeyFrom::Chain, KeyFrom::Chain) => format!("the S3 keys came from {}", KeyFrom::Chain),
            (access, secret) => format!("the S3 access key came from {access}, the secret key from {secret}"),
        }
    }

    /// The warning for a secret given as a flag's value, if one is: every local user can
    /// read a command line (`ps`, `/proc/PID/cmdline`), for as long as rkectl runs.
    pub fn command_line_secret_warning(&self) -> Option<&'static str> {
        self.secret_key.is_some().then_some(
            "--secret-key puts the S3 secret key on the command line, where every user of this machine can read it (ps); \
             use --secret-key-file FILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment",
        )
    }
}

/// Where an S3 key of an action comes from, for an error that asks to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFrom {
    /// A flag's value (`--access-key`, `--secret-key`).
    Flag(&'static str),
    /// `--secret-key-file`.
    File(PathBuf),
    /// cluster.yml's `s3backupconfig`.
    ClusterYml(&'static str),
    /// None is given: the AWS credentials chain on this machine finds them.
    Chain,
}

impl std::fmt::Display for KeyFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyFrom::Flag(flag) => f.write_str(flag),
            KeyFrom::File(p) => write!(f, "--secret-key-file {}", p.display()),
            KeyFrom::ClusterYml(key) => write!(f, "cluster.yml (s3backupconfig.{key})"),
            KeyFrom::Chain => f.write_str(
                "the AWS credentials chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws profiles, instance role)",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment that names a region and hands over nothing.
    struct Env;

    impl S3Environment for Env {
        fn region(&self, _: &str) -> Option<String> {
            Some("env-region".into())
        }
        fn keys(&self) -> Result<Option<(Secret, Secret, Option<Secret>)>, BadInput> {
            Ok(None)
        }
        fn custom_ca(&self) -> Option<String> {
            None
        }
    }

    fn configured(s3_keys: &str) -> Option<S3Settings> {
        let yaml = format!(
            "nodes:\n  - address: 10.0.0.1\n    user: u\n    role: [etcd]\nservices:\n  etcd:\n    backup_config:\n      s3backupconfig:\n        bucket_name: b\n        endpoint: s3.example.com\n{s3_keys}"
        );
        super::super::parse(std::path::Path::new("cluster.yml"), yaml).unwrap().cluster.etcd.s3
    }

    #[test]
    fn flags_win_over_s3backupconfig_which_wins_over_the_environment() {
        let c = configured("        access_key: AKIAYML\n        secret_key: yml-secret\n        folder: f\n");
        let flags = S3Flags { s3: true, bucket: Some("flag-bucket".into()), ..Default::default() };
        let s = S3Settings::resolve(S3Use::Flags, &flags, c.as_ref(), &Env).unwrap().unwrap();
        assert_eq!((s.bucket.as_str(), s.endpoint.as_str()), ("flag-bucket", "s3.example.com"));
        assert_eq!((s.folder.as_deref(), s.region.as_deref()), (Some("f"), Some("env-region")));
        assert_eq!((s.access_key.expose(), s.secret_key.expose()), ("AKIAYML", "yml-secret"));
        let alone = S3Flags { s3: true, bucket: Some("b".into()), ..Default::default() };
        let s = S3Settings::resolve(S3Use::Flags, &alone, None, &Env).unwrap().unwrap();
        assert_eq!(s.endpoint, super::super::DEFAULT_S3_ENDPOINT);
        assert!(S3Settings::resolve(S3Use::Flags, &S3Flags::default(), c.as_ref(), &Env).unwrap().is_none());
        let from_yml = S3Settings::resolve(S3Use::FlagsOrConfigured, &S3Flags::default(), c.as_ref(), &Env);
        assert_eq!(from_yml.unwrap().unwrap().region.as_deref(), Some("env-region"));
        let stray = S3Flags { region: Some("r".into()), ..Default::default() };
        let e = S3Settings::resolve(S3Use::FlagsOrConfigured, &stray, c.as_ref(), &Env).unwrap_err();
        assert_eq!(e.to_string(), "S3 flags were given without --s3");
    }

    #[test]
    fn the_secret_key_file_gives_the_key_without_its_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cr3t-from-a-file\n").unwrap();
        let c = configured("        access_key: AKIAYML\n        secret_key: yml-secret\n");
        let flags = S3Flags { secret_key_file: Some(file.clone()), ..Default::default() };
        let s = S3Settings::resolve(S3Use::FlagsOrConfigured, &flags, c.as_ref(), &Env).unwrap().unwrap();
        assert_eq!((s.access_key.expose(), s.secret_key.expose()), ("AKIAYML", "s3cr3t-from-a-file"));
        assert_eq!(flags.key_sources(c.as_ref()), (KeyFrom::ClusterYml("access_key"), KeyFrom::File(file.clone())));
        assert!(flags.command_line_secret_warning().is_none());
        std::fs::write(&file, "two\nlines\n").unwrap();
        let target = c.as_ref().unwrap().target();
        let e = S3Settings::resolve(S3Use::Target(&target), &flags, None, &Env).unwrap_err().to_string();
        assert!(e.contains("does not hold one S3 secret key on one line") && !e.contains("two"), "{e}");
        let gone = S3Flags { secret_key_file: Some(dir.path().join("gone")), ..Default::default() };
        let e = S3Settings::resolve(S3Use::Target(&target), &gone, None, &Env).unwrap_err().to_string();
        assert!(e.starts_with("cannot read --secret-key-file ") && e.contains("gone"), "{e}");
    }

    #[test]
    fn errors_about_the_keys_say_where_each_came_from() {
        let flags = S3Flags {
            access_key: Some("AKIAFLAG".into()),
            secret_key: Some("flag-secret".into()),
            ..Default::default()
        };
        let help = flags.key_sources_help(configured("").as_ref());
        assert_eq!(help, "the S3 access key came from --access-key, the secret key from --secret-key");
        assert!(flags.command_line_secret_warning().is_some_and(|w| w.contains("--secret-key-file")));
        let keys = configured("        access_key: A\n        secret_key: S\n");
        assert_eq!(
            S3Flags::default().key_sources_help(keys.as_ref()),
            "the S3 access key came from cluster.yml (s3backupconfig.access_key), the secret key from cluster.yml (s3backupconfig.secret_key)"
        );
        assert!(
            S3Flags::default()
                .key_sources_help(configured("").as_ref())
                .starts_with("the S3 keys came from the AWS credentials chain")
        );
    }
}
