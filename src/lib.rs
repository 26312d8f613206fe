//! rkectl: back up and recover the etcd plane of RKE-style Kubernetes clusters.
//!
//! The library is the whole product; `main.rs` is thin glue over [`cli`]. Data flows
//! cluster.yml → [`config`] → observed state ([`refresh`], read-only, through [`host`]) →
//! [`plan`] (a DAG of typed steps, rendered as a diff) → [`exec`] (parallel, journaled in
//! [`state`]) → the [`steps`] act on hosts through the [`host`] trait.

pub mod agent;
pub mod cli;
pub mod cluster_pki;
pub mod config;
pub mod etcd;
pub mod exec;
pub mod host;
pub mod layout;
pub mod plan;
pub mod prepare;
pub mod refresh;
pub mod rke;
pub mod s3;
pub mod secret;
pub mod state;
pub mod steps;
