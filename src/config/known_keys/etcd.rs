//! `services.etcd`: the service rkectl backs up, and its recurring snapshots
//! (`backup_config`, `s3backupconfig`).

use super::Shape::*;
use super::{Key, k};

/// `ETCDService`.
pub(super) const ETCD_SERVICE: &[Key] = &[
    k("image", Value),
    k("extra_args", Free),
    k("extra_args_array", Free),
    k("extra_binds", Value),
    k("extra_env", Value),
    k("win_extra_args", Free),
    k("win_extra_args_array", Free),
    k("win_extra_binds", Value),
    k("win_extra_env", Value),
    k("external_urls", Value),
    k("ca_cert", Value),
    k("cert", Value),
    k("key", Value),
    k("path", Value),
    k("uid", Value),
    k("gid", Value),
    k("snapshot", Value),
    k("retention", Value),
    k("creation", Value),
    k("backup_config", Struct(BACKUP_CONFIG)),
];

/// `BackupConfig`.
pub(super) const BACKUP_CONFIG: &[Key] = &[
    k("enabled", Value),
    k("interval_hours", Value),
    k("retention", Value),
    k("s3backupconfig", Struct(S3_BACKUP_CONFIG)),
    k("safe_timestamp", Value),
    k("timeout", Value),
    // rkectl's own key (RKE ignores it): its warning says so where it is read.
    k("rkectl_drill", Value),
];

/// `S3BackupConfig`.
pub(super) const S3_BACKUP_CONFIG: &[Key] = &[
    k("access_key", Value),
    k("secret_key", Value),
    k("bucket_name", Value),
    k("region", Value),
    k("endpoint", Value),
    k("custom_ca", Value),
    k("folder", Value),
];
