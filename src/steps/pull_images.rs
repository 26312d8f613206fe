//! `pull-images`: pulls the images a host lacks, through cluster.yml's private registry
//! when one serves them.

use super::{Executor, Kind};
use crate::config::HostAddr;
use crate::steps::context::{StepCtx, StepError};
use crate::steps::planning::{Builder, CompileError};
use crate::steps::Step;
use serde::{Deserialize, Serialize};

/// Pulls images the host lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullImages {
    pub images: Vec<String>,
}

impl Kind for PullImages {
    const CHANGES_CLUSTER: bool = false;

    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        Ok(match b.facts(host) {
            Some(f) if !f.missing_images.is_empty() => vec![PullImages { images: f.missing_images.clone() }],
            _ => Vec::new(),
        })
    }

    fn describe(&self) -> String {
        format!("pull {}", self.images.join(", "))
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let host = ex.host(ex.on(step)?).await?;
        for image in &self.images {
            let registry = ex.cluster.registry_for(image);
            if crate::host::ensure_image(host.as_ref(), image, registry).await? {
                ctx.log("image", format!("Pulled image [{image}] on host [{}]", host.addr()));
            }
        }
        Ok(())
    }
}
