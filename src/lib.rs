//! rkectl: back up and recover the etcd plane of Kubernetes clusters that RKE built.
//!
//! The library is the whole product; `main.rs` is thin glue over [`cli`].
//!
//! # What flows through it
//! ```text
//! cluster.yml ──parse+validate──▶ Cluster (typed, RKE's defaults)         [config]
//! cluster.rkestate ─────────────▶ the PKI (RKE's CA and certificates)     [rke, cluster_pki]
//!                                    │
//! the action (CLI) ─────────────────▶ compile(template × Cluster × observed)  [plan]
//!                                    │           ▲
//!                                    │           └── refresh: hosts and S3, read-only  [refresh]
//!                                    ▼
//!                       Plan = DAG of typed steps + per-host before/after
//!                                    │
//!               render as a diff ◀───┼───▶ save to a plan file (hash-pinned)
//!                                    │
//!                       apply: parallel, bounded, barriers; every step start and
//!                       finish journaled (fsync)                            [exec, state]
//!                                    │
//!                       the steps act on hosts through the Host trait:
//!                       OpenSSH + Docker (bollard), or an in-memory fake     [steps, host]
//! ```
//! An interrupted apply is finished by `rkectl apply`, which reads the journal and runs
//! what is left (every step is idempotent).
//!
//! # Where things are
//! - [`model`]: the shared words at the bottom (snapshot names, formats, checksums, an etcd
//!   member's start-up terms); every layer may use it, it uses none of them.
//! - [`config`]: cluster.yml as RKE reads it, defaults, validation with located diagnostics.
//! - [`rke`]: RKE's own formats: `cluster.rkestate`, its certificates (names, SANs), the
//!   snapshot archives rke-tools writes.
//! - [`cluster_pki`]: which PKI an action uses, and the rule that no CA is replaced silently.
//! - [`invocation`]: what one invocation asks for (an action, its flags) decided once
//!   into the library's inputs: the action, its S3 settings, PKI flags, state passphrase.
//! - [`prepare`]: inputs → refresh → PKI → plan, changing nothing.
//! - [`inventory`]: every snapshot copy on the hosts and in S3, and whether they agree.
//! - [`resume`]: an unfinished apply made ready to finish (its journal held against
//!   cluster.yml, the state files, the PKI it places), changing nothing.
//! - [`plan`]: the compiler (it asks each step kind what it plans), the diff, plan files,
//!   and what a plan is based on ([`plan::Observed`]: offline, or what refresh saw);
//!   `plans/*.yml` are the templates (what each action does, in order, on which hosts,
//!   with barriers).
//! - [`exec`]: the scheduler and its events; [`state`]: journal, lock, rkectl's state file.
//! - [`steps`]: one module per step kind (its parameters, when it is planned, its line in
//!   the plan, its effect on the diff, how it runs); [`etcd`]: the etcd container as RKE runs
//!   it, and every helper's container spec; [`layout`]: where snapshot files live on a node.
//! - [`host`]: the narrow interface to a node (containers, files, streams) and its SSH +
//!   Docker implementation; [`agent_binary`]: rkectl's own binary, copied to the nodes,
//!   which helpers run inside the etcd image ([`agent`] is what it does there).
//! - [`s3`]: S3 transfers (streaming multipart upload, resumable download, manifests).
//! - [`secret`]: secrets that cannot be printed or serialised by accident.
//!
//! # Rules the design keeps
//! - Nothing destructive runs before every pre-flight check on every host has passed (a
//!   barrier in the plan, not a special case in the scheduler).
//! - What RKE made is RKE's: its files are the source of truth, and a plan that would
//!   replace something rkectl did not make says so and asks first.
//! - Secrets (S3 keys, SSH keys, private keys) never reach plans, the journal, logs or
//!   error messages.

pub mod agent;
pub mod agent_binary;
pub mod apply;
pub mod cli;
pub mod cluster_pki;
pub mod config;
pub mod etcd;
pub mod exec;
pub mod host;
pub mod inventory;
pub mod invocation;
pub mod layout;
pub mod model;
pub mod plan;
pub mod prepare;
pub mod refresh;
pub mod resume;
pub mod rke;
pub mod s3;
pub mod secret;
pub mod state;
pub mod steps;
