//! services.etcd: the image etcd runs, its flags, its recurring snapshots (backup_config)
//! and the S3 bucket they go to.

use super::{Validator, s};
use crate::config::duration::GoDuration;
use crate::config::lenient::{LenientBool, LenientInt, ScalarString};
use crate::config::model::{
    DEFAULT_CREATION, DEFAULT_ETCD_IMAGE, DEFAULT_INTERVAL_HOURS, DEFAULT_RETENTION, DEFAULT_RETENTION_COUNT,
    EtcdService, RecurringSnapshots, S3Settings,
};
use crate::config::raw::{RawBackupConfig, RawEtcd, RawS3};
use crate::config::registries::{self, Registries};
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::time::Duration;

impl Validator<'_> {
    /// The image etcd runs.
    pub(super) fn etcd_image(
        &mut self,
        system_image: &Option<ScalarString>,
        written: &Option<ScalarString>,
        registries: &Registries,
    ) -> String {
        // RKE takes the etcd image from system_images and overwrites services.etcd.image; a
        // default registry goes in front of the default image only.
        let image = s(system_image)
            .unwrap_or_else(|| registries::with_default_registry(DEFAULT_ETCD_IMAGE, registries.default_url()));
        self.registry_for_pulls(registries, &image);
        if let Some(ignored) = s(written).filter(|i| i != &image) {
            self.warning(
                "services.etcd.image",
                format!("services.etcd.image `{ignored}` is ignored, as RKE ignores it: etcd runs {image}"),
                "ignored",
                Some("set the image under system_images.etcd"),
            );
        }
        image
    }

    /// `services.etcd` around `image`; `None` when its snapshot settings are a problem.
    pub(super) fn etcd_service(&mut self, etcd_raw: RawEtcd, image: String) -> Option<EtcdService> {
        let extra_args: BTreeMap<String, String> =
            etcd_raw.extra_args.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        let extra_binds = etcd_raw.extra_binds.unwrap_or_default().into_iter().map(|v| v.0).collect();
        let extra_env = etcd_raw.extra_env.unwrap_or_default().into_iter().map(|v| v.0).collect();

        let legacy_on = etcd_raw.snapshot.map(|b| b.0).unwrap_or(false);
        let creation = self.duration("services.etcd.creation", &etcd_raw.creation, DEFAULT_CREATION);
        let retention = self.duration("services.etcd.retention", &etcd_raw.retention, DEFAULT_RETENTION);
        let (recurring, s3) = match etcd_raw.backup_config {
            Some(bc) => self.backup_config(bc, legacy_on, creation, retention),
            None if legacy_on => (RecurringSnapshots::Legacy { creation: creation?, retention: retention? }, None),
            None => (RecurringSnapshots::Disabled, None),
        };
        Some(EtcdService { image, extra_args, extra_binds, extra_env, recurring, s3 })
    }

    fn duration(&mut self, path: &str, raw: &Option<ScalarString>, default: Duration) -> Option<GoDuration> {
        let Some(text) = s(raw) else {
            return Some(GoDuration(default));
        };
        match GoDuration::parse(&text) {
            Ok(d) if d.0.is_zero() => {
                self.problem(
                    path,
                    format!("{} must be longer than zero", last(path)),
                    "zero duration",
                    Some("write a duration like `5m0s` or `24h`"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    path,
                    format!("invalid {}: {e}", last(path)),
                    "not a duration",
                    Some("Go-style durations: `5m0s`, `24h`, `1h30m`"),
                );
                None
            }
        }
    }

    /// `backup_config`: RKE's recurring snapshots, and the bucket they are uploaded to.
    fn backup_config(
        &mut self,
        bc: RawBackupConfig,
        legacy_on: bool,
        creation: Option<GoDuration>,
        retention: Option<GoDuration>,
    ) -> (RecurringSnapshots, Option<S3Settings>) {
        let base = "services.etcd.backup_config";
        let s3 = bc.s3backupconfig.and_then(|raw| self.s3(&format!("{base}.s3backupconfig"), raw));
        let enabled = bc.enabled.map(|b| b.0).unwrap_or(true);
        let (interval, count) = self.snapshot_schedule(base, bc.interval_hours, bc.retention, bc.timeout);
        if !enabled {
            // RKE then applies no defaults and starts the service with a zero interval, which
            // exits at once: no recurring snapshots, whatever the legacy settings say.
            if legacy_on {
                self.warning(
                    &format!("{base}.enabled"),
                    "backup_config.enabled is false, so no recurring snapshots are taken, as with RKE (services.etcd.snapshot: true does not bring them back)",
                    "recurring snapshots off",
                    Some("remove `enabled: false` to take snapshots"),
                );
            }
            return (RecurringSnapshots::Disabled, s3);
        }
        let (Some(interval_hours), Some(retention_count)) = (interval, count) else {
            return (RecurringSnapshots::Disabled, s3);
        };
        let overrides_legacy = match (legacy_on, creation, retention) {
            (true, Some(c), Some(r)) => Some((c, r)),
            _ => None,
        };
        let drill = self.drill(base, bc.rkectl_drill);
        (RecurringSnapshots::BackupConfig { interval_hours, retention: retention_count, overrides_legacy, drill }, s3)
    }

    /// `interval_hours` and `retention` (a count here), defaults applied; `timeout` is
    /// checked but not kept.
    fn snapshot_schedule(
        &mut self,
        base: &str,
        interval_hours: Option<LenientInt>,
        retention: Option<LenientInt>,
        timeout: Option<LenientInt>,
    ) -> (Option<u32>, Option<u32>) {
        let interval = self.positive_count(
            &format!("{base}.interval_hours"),
            interval_hours.map(|i| i.0),
            DEFAULT_INTERVAL_HOURS,
            "interval_hours",
            "hours between snapshots",
        );
        let count = self.positive_count(
            &format!("{base}.retention"),
            retention.map(|i| i.0),
            DEFAULT_RETENTION_COUNT,
            "retention",
            "number of snapshots to keep",
        );
        if let Some(t) = timeout
            && t.0 <= 0
        {
            self.problem(
                &format!("{base}.timeout"),
                "backup_config.timeout must be a positive number of seconds",
                "not positive",
                None,
            );
        }
        (interval, count)
    }

    /// `rkectl_drill`, said to be rkectl's own whenever it is written.
    fn drill(&mut self, base: &str, written: Option<LenientBool>) -> bool {
        let drill = written.is_some_and(|b| b.0);
        if written.is_some() {
            self.warning(
                &format!("{base}.rkectl_drill"),
                "rkectl_drill is rkectl's own setting: RKE ignores it, and its own etcd-rolling-snapshots does not drill (rkectl replaces that service when this is true)",
                "rkectl only",
                Some("with `true`, each recurring snapshot is restored in scratch space and read right after it is taken; a failure is an error line in the service's log"),
            );
        }
        drill
    }

    fn positive_count(&mut self, path: &str, value: Option<i64>, default: u32, name: &str, what: &str) -> Option<u32> {
        match value {
            None => Some(default),
            Some(v) if v >= 1 && v <= i64::from(u32::MAX) => Some(v as u32),
            Some(v) => {
                let (message, label) = if v < 1 {
                    (format!("{name} must be at least 1, not {v}"), "must be a positive whole number")
                } else {
                    (format!("{name} must be between 1 and {}, not {v}", u32::MAX), "too large")
                };
                self.problem(path, message, label, Some(&format!("{name} is the {what}")));
                None
            }
        }
    }

    fn s3(&mut self, base: &str, raw: RawS3) -> Option<S3Settings> {
        let bucket = s(&raw.bucket_name);
        if bucket.is_none() {
            self.problem(
                base,
                "s3backupconfig has no bucket_name",
                "bucket_name missing",
                Some("add `bucket_name: <bucket>` to s3backupconfig"),
            );
        }
        let endpoint = s(&raw.endpoint);
        if endpoint.is_none() {
            self.problem(
                base,
                "s3backupconfig has no endpoint",
                "endpoint missing",
                Some("RKE refuses it too: add `endpoint: s3.amazonaws.com` (or your S3 server)"),
            );
        }
        let endpoint = endpoint.unwrap_or_default();
        if let Some(ca) = s(&raw.custom_ca)
            && !is_pem_certificate(&ca)
        {
            self.problem(
                &format!("{base}.custom_ca"),
                "custom_ca is not a PEM certificate",
                "not a certificate",
                Some("RKE refuses it too: paste the CA certificate, from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----"),
            );
        }
        if endpoint.contains(char::is_whitespace) {
            self.problem(
                &format!("{base}.endpoint"),
                format!("S3 endpoint `{endpoint}` contains spaces"),
                "bad endpoint",
                None,
            );
        }
        Some(S3Settings {
            endpoint,
            bucket: bucket?,
            region: s(&raw.region),
            folder: s(&raw.folder),
            custom_ca: s(&raw.custom_ca),
            access_key: Secret::new(s(&raw.access_key).unwrap_or_default()),
            secret_key: Secret::new(s(&raw.secret_key).unwrap_or_default()),
            session_token: None,
        })
    }
}

/// Whether `text` holds a PEM certificate that parses.
fn is_pem_certificate(text: &str) -> bool {
    x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
        .next()
        .and_then(Result::ok)
        .is_some_and(|p| p.label == "CERTIFICATE" && p.parse_x509().is_ok())
}

fn last(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use crate::config::RecurringSnapshots;
    use crate::config::tests::{NODE, parse_text};

    #[test]
    fn rkectls_own_drill_key_is_read_and_said_to_be_rkectls_at_its_line_even_under_strict() {
        let text =
            format!("{NODE}services:\n  etcd:\n    backup_config:\n      retention: 4\n      rkectl_drill: true\n");
        let cfg = parse_text(&text, true).unwrap();
        assert!(
            matches!(cfg.cluster.etcd.recurring, RecurringSnapshots::BackupConfig { retention: 4, drill: true, .. }),
            "{:?}",
            cfg.cluster.etcd.recurring
        );
        let [w] = &cfg.warnings[..] else { panic!("{:?}", cfg.warnings) };
        assert!(w.message.starts_with("rkectl_drill is rkectl's own setting: RKE ignores it"), "{}", w.message);
        assert_eq!(w.line, Some(9));
        let plain = format!("{NODE}services:\n  etcd:\n    backup_config:\n      retention: 4\n");
        let cfg = parse_text(&plain, true).unwrap();
        assert!(matches!(cfg.cluster.etcd.recurring, RecurringSnapshots::BackupConfig { drill: false, .. }));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }
}
