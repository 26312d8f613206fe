//! What a helper container does when it ends: the seam between the fake's Docker and the
//! helpers it plays.

use super::{FakeHostState, FakeWorld};
use crate::config::HostAddr;
use std::collections::BTreeMap;

/// The work of a container that runs to its end on a fake host, plugged into a `FakeWorld`.
pub trait ContainerBehaviour: Send + Sync {
    /// Does the work of container `name` (run with `cmd`) on the host at `addr`; returns its
    /// exit code and what it printed.
    ///
    /// `hosts` is every host of `world`, already locked for the call: reach them through it,
    /// never through `world.hosts`, whose lock would then wait for ever.
    fn run(
        &self,
        world: &FakeWorld,
        addr: &HostAddr,
        hosts: &mut BTreeMap<HostAddr, FakeHostState>,
        name: &str,
        cmd: &[String],
    ) -> (i64, String);
}
