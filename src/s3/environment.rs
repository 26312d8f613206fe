//! The two environments S3 settings are resolved in ([`crate::config::S3Environment`]):
//! the workstation rkectl runs on, and a helper on a node.

use crate::config::{BadInput, S3Environment};
use crate::secret::Secret;

/// The workstation: the region comes from the endpoint or the AWS environment and profile,
/// so that the plan shows it and the helpers on the nodes, which see neither, sign for the
/// same region; keys are the S3 client's credentials chain's.
///
/// `AWS_CA_BUNDLE` is not handed over as the CA: it often names the whole system bundle
/// (200 KB and more), and the CA travels to the helpers on the nodes in one environment
/// variable, which the kernel caps at 128 KiB. The S3 client on this machine reads it itself.
pub struct Workstation;

impl S3Environment for Workstation {
    fn region(&self, endpoint: &str) -> Option<String> {
        // The providers read only the environment and the profile files (synchronously):
        // nothing here needs the runtime's I/O.
        futures::executor::block_on(super::default_region(endpoint))
    }

    fn keys(&self) -> Result<Option<(Secret, Secret, Option<Secret>)>, BadInput> {
        Ok(None)
    }

    fn custom_ca(&self) -> Option<String> {
        None
    }
}

/// A helper on a node: the keys are in the file rkectl bound in (else none: the SDK's
/// chain, the node's IAM role), the CA in [`super::CA_ENV`]; the region is what the
/// workstation resolved, or the S3 client's default.
pub struct Node;

impl S3Environment for Node {
    fn region(&self, _endpoint: &str) -> Option<String> {
        None
    }

    fn keys(&self) -> Result<Option<(Secret, Secret, Option<Secret>)>, BadInput> {
        match std::env::var(super::CREDENTIALS_FILE_ENV) {
            Ok(path) if !path.is_empty() => {
                let k = super::read_credentials_file(&path).map_err(|e| BadInput::new(e, ""))?;
                Ok(Some((k.access_key, k.secret_key, k.session_token)))
            }
            _ => Ok(None),
        }
    }

    fn custom_ca(&self) -> Option<String> {
        std::env::var(super::CA_ENV).ok().filter(|s| !s.is_empty())
    }
}
