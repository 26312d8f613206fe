//! `rkectl etcd snapshot-list`: the library's snapshot inventory, as a table or JSON.

use super::args::{Common, S3Flags};
use super::{CliError, connector, inputs, keys_hint, load_config, redact_refusal};
use crate::inventory::InventoryError;
use crate::secret::Secret;

/// Lists snapshots.
pub async fn run(common: &Common, verify: bool, s3_flags: &S3Flags) -> Result<(), CliError> {
    let cfg = load_config(common)?;
    // As RKE's own commands do, cluster.yml's s3backupconfig counts without --s3.
    let s3 = inputs::s3(crate::config::S3Use::FlagsOrConfigured, s3_flags, &cfg.cluster)?;
    let secrets: Vec<Secret> = s3.iter().flat_map(|s| [s.access_key.clone(), s.secret_key.clone()]).collect();
    let connector = connector(common, &cfg.cluster);
    let rows = crate::inventory::list(&cfg.cluster, connector, s3.as_ref(), verify).await.map_err(|e| match e {
        InventoryError::AgentBinary(e) => CliError::refused(e),
        InventoryError::Refresh(e) => {
            let hint = keys_hint(e.s3(), s3_flags.library().key_sources_help(cfg.cluster.configured_s3()));
            redact_refusal(e, &secrets, hint)
        }
    })?;
    if common.json {
        super::json_line("snapshots", &rows);
        return Ok(());
    }
    let hosts: Vec<String> = cfg.cluster.etcd_nodes().map(|n| n.address.to_string()).collect();
    print!("{}", crate::inventory::table(&rows, &hosts));
    Ok(())
}
