//! rkectl: back up and recover the etcd plane of Kubernetes clusters that RKE built.
//!
//! The library is the whole product; `main.rs` is thin glue over [`cli`], which is thin glue
//! over [`session`].
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
//! # Where things are, by layer (bottom up)
//! A module uses its own layer and those below it, never one above (`tests/architecture.rs`
//! holds the list and checks it).
//! 0. Words: [`model`] (snapshot names and formats, addresses, what refresh saw, a step's
//!    words, the action asked for; it uses nothing of rkectl), [`secret`] (secrets that
//!    cannot be printed or serialised by accident), [`local`] (this machine's files and
//!    clock).
//! 1. Inputs: [`config`] (cluster.yml as RKE reads it, defaults, validation with located
//!    diagnostics), [`layout`] (where snapshot files live on a node), [`rke`] (RKE's own
//!    formats: `cluster.rkestate`, its certificates, the archives rke-tools writes, and the
//!    sealed state rkectl stores beside an S3 copy).
//! 2. Mechanisms: [`host`] (the narrow interface to a node and its SSH + Docker
//!    implementation), [`etcd`] (the etcd container as RKE runs it, every helper's spec),
//!    [`agent_binary`] (rkectl's own binary, copied to the nodes) and [`agent`] (what it
//!    does there), [`s3`] (streaming multipart upload, resumable download, manifests).
//! 3. [`steps`]: one module per step kind (its parameters, when it is planned, its line in
//!    the plan, its effect on the diff, how it runs), and the contexts kinds are planned
//!    in ([`steps::planning`]) and run in ([`steps::context`]).
//! 4. Planning: [`refresh`] (hosts and S3, read-only), [`cluster_pki`] (which PKI an action
//!    uses; no CA is replaced silently), [`plan`] (the compiler that asks each kind what it
//!    plans and wires the steps into a graph, the diff, saved plans; `plans/*.yml` are the
//!    templates).
//! 5. Running: [`exec`] (the scheduler and its events), [`state`] (journal, lock, rkectl's
//!    state file).
//! 6. Driving: [`invocation`] (what one invocation asks for, decided once: the action, its S3
//!    settings, PKI flags, state passphrase), [`prepare`] (inputs → refresh → PKI → plan,
//!    changing nothing), [`inventory`] (every snapshot copy on the hosts and in S3, and
//!    whether they agree), [`resume`] (an unfinished apply made ready to finish), [`apply`]
//!    (a plan to a finished run), [`session`] (one command's whole way: cluster.yml read,
//!    the cluster locked, the plan prepared, shown, confirmed and applied, through a
//!    [`session::Console`]).
//! 7. The edge: [`terminal`] (the session at a terminal: plans on stdout, log lines and
//!    progress on stderr, `--json`, Ctrl-C), [`cli`] (the flags, turned into a session).
//!
//! # Rules the design keeps
//! - Nothing destructive runs before every pre-flight check on every host has passed (a
//!   barrier in the plan, not a special case in the scheduler).
//! - What RKE made is RKE's: its files are the source of truth, and a plan that would
//!   replace something rkectl did not make says so and asks first.
//! - Secrets (S3 keys, SSH keys, private keys) never reach plans, the journal, logs or
//!   error messages.

// std's print macros panic when their stream is closed (`rkectl … 2>&1 | head`): the
// process then exits 101 whatever it did, an apply that succeeded included. These shadow
// them in the whole crate (they are defined before every module) and drop what a closed
// stream cannot take, as a shell tool does.
macro_rules! eprintln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
macro_rules! eprint {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($t)*);
    }};
}
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! print {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

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
pub mod local;
pub mod model;
pub mod plan;
pub mod prepare;
pub mod refresh;
pub mod resume;
pub mod rke;
pub mod s3;
pub mod secret;
pub mod session;
pub mod state;
pub mod steps;
pub mod terminal;
