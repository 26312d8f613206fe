//! Docker over the node's socket, forwarded through the session: the daemon checked when
//! dialing, then its images, containers and their output.

use super::*;
use crate::config::registries::RegistryAuth;
use crate::host::registry_pull::{self, PullAuth, PullError};
use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy as DockerRestart, RestartPolicyNameEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptions,
    WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use openssh::ForwardType;

/// Forwards the node's Docker socket to the local `socket`, checks the daemon's version and
/// agrees on an API version with it; returns the client and the daemon's version.
pub(super) async fn connect(
    conn: &ConnRef,
    node: &Node,
    options: &SshOptions,
    socket: &Path,
) -> HostResult<(Docker, String)> {
    let addr = &node.address;
    let docker_down = |reason: String| HostError::DockerDown { host: addr.clone(), reason };
    conn.request_port_forward(ForwardType::Local, socket, Path::new(&node.docker_socket))
        .await
        .map_err(|e| docker_down(format!("cannot forward {} over SSH: {}", node.docker_socket, chain(&e))))?;
    let socket_str =
        socket.to_str().ok_or_else(|| docker_down(format!("local socket path {} is not UTF-8", socket.display())))?;
    let docker = Docker::connect_with_unix(socket_str, DOCKER_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        .map_err(|e| docker_down(chain(&e)))?;

    let version = match docker.version().await {
        Ok(v) => v,
        Err(e) => {
            let why = diagnose_docker_socket(conn, &node.docker_socket).await;
            return Err(docker_down(format!(
                "Cannot connect to the Docker daemon at unix://{} on {addr}: {}{why}",
                node.docker_socket,
                chain(&e)
            )));
        }
    };
    let server_version = version.version.clone().unwrap_or_default();
    if !options.ignore_docker_version {
        check_docker_version(addr, &server_version, version.api_version.as_deref())?;
    }
    // Talk the daemon's own API version: bollard defaults to a newer one than old daemons know.
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| docker_down(format!("cannot agree on a Docker API version: {}", chain(&e))))?;
    Ok((docker, server_version))
}

impl SshHost {
    /// Pulls `image` with `registry`'s credentials (see [`registry_pull`] for why not bollard).
    async fn pull_with_credentials(&self, image: &str, registry: &PrivateRegistry) -> HostResult<()> {
        let unavailable = |reason: String| HostError::ImageUnavailable {
            host: self.addr.clone(),
            image: image.to_string(),
            reason: format!("{reason} (pulled as private_registries[{}], {})", registry.index, registry.url),
        };
        let RegistryAuth::Basic { user, password } = &registry.auth else {
            // Config refuses the plugin for the images rkectl pulls; this is the last guard.
            return Err(unavailable("its registry's ecr_credential_plugin is not supported by rkectl".into()));
        };
        let v = self.docker.client_version();
        let api = format!("{}.{}", v.major_version, v.minor_version);
        let auth = PullAuth { user, password, server: &registry.url };
        let silence = self.waits.pull_silence;
        match registry_pull::pull(&self.docker_local, &api, &with_default_tag(image), &auth, silence).await {
            Ok(()) => Ok(()),
            Err(PullError::Refused(reason)) => Err(unavailable(reason)),
            Err(PullError::Stalled(silent)) => {
                Err(HostError::PullStalled { host: self.addr.clone(), image: image.to_string(), silent })
            }
            Err(PullError::Io(e)) => match self.lost("pull image").await {
                Some(lost) => Err(lost),
                None => Err(unavailable(format!("the Docker socket failed: {e}"))),
            },
        }
    }

    /// What a Docker failure during `op` means, and whether trying again may help.
    async fn docker_err(&self, op: &str, e: DockerError) -> HostError {
        let reason = chain(&e);
        let (reason, transient) = match &e {
            DockerError::DockerResponseServerError { message, .. } if program_missing(message) => {
                return HostError::ProgramMissing {
                    host: self.addr.clone(),
                    op: op.to_string(),
                    reason: message.clone(),
                };
            }
            DockerError::DockerResponseServerError { status_code, message } => {
                (format!("{message} (HTTP {status_code})"), *status_code == 503)
            }
            DockerError::RequestTimeoutError => (format!("no answer within {DOCKER_TIMEOUT_SECS}s"), true),
            DockerError::HyperLegacyError { .. }
            | DockerError::IOError { .. }
            | DockerError::SocketNotFoundError(_) => {
                if let Some(lost) = self.lost(op).await {
                    return lost;
                }
                (
                    format!(
                        "Cannot connect to the Docker daemon at unix://{} on {}: {reason}",
                        self.docker_socket, self.addr
                    ),
                    true,
                )
            }
            _ => (reason, false),
        };
        HostError::Docker { host: self.addr.clone(), op: op.to_string(), reason, transient }
    }
}

/// Docker's version and data root ([`Host::docker_info`]).
pub(super) async fn docker_info(host: &SshHost) -> HostResult<DockerInfo> {
    match host.docker.info().await {
        Ok(info) => Ok(DockerInfo {
            server_version: info.server_version.unwrap_or_else(|| host.docker_version.clone()),
            root_dir: info.docker_root_dir.unwrap_or_default(),
            architecture: info.architecture.unwrap_or_default(),
        }),
        Err(e) => Err(host.docker_err("info", e).await),
    }
}

/// Whether `image` is present ([`Host::image_present`]).
pub(super) async fn image_present(host: &SshHost, image: &str) -> HostResult<bool> {
    match host.docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(host.docker_err("inspect image", e).await),
    }
}

/// Pulls `image`, with `registry`'s credentials when one serves it ([`Host::pull_image`]).
pub(super) async fn pull_image(host: &SshHost, image: &str, registry: Option<&PrivateRegistry>) -> HostResult<()> {
    if let Some(r) = registry {
        return host.pull_with_credentials(image, r).await;
    }
    let options = CreateImageOptionsBuilder::new().from_image(&with_default_tag(image)).build();
    let mut progress = host.docker.create_image(Some(options), None, None);
    let silence = host.waits.pull_silence;
    loop {
        // Dropping the stream closes the request, which makes Docker cancel the pull.
        let item = match tokio::time::timeout(silence, progress.next()).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => {
                return Err(HostError::PullStalled {
                    host: host.addr.clone(),
                    image: image.to_string(),
                    silent: silence,
                });
            }
        };
        if let Err(e) = item {
            let reason = match &e {
                DockerError::DockerResponseServerError { message, .. } => message.clone(),
                DockerError::DockerStreamError { error } => error.clone(),
                _ => {
                    if let Some(lost) = host.lost("pull image").await {
                        return Err(lost);
                    }
                    chain(&e)
                }
            };
            return Err(HostError::ImageUnavailable { host: host.addr.clone(), image: image.to_string(), reason });
        }
    }
    Ok(())
}

/// The container called `name`, if any ([`Host::inspect_container`]).
pub(super) async fn inspect_container(host: &SshHost, name: &str) -> HostResult<Option<ContainerInfo>> {
    let r = match host.docker.inspect_container(name, None::<InspectContainerOptions>).await {
        Ok(r) => r,
        Err(e) if status_of(&e) == Some(404) => return Ok(None),
        Err(e) => return Err(host.docker_err("inspect container", e).await),
    };
    let state = r.state.unwrap_or_default();
    let running = state.running.unwrap_or(false);
    let config = r.config.unwrap_or_default();
    let binds = r.host_config.and_then(|h| h.binds).unwrap_or_default();
    let mut args = config.entrypoint.clone().unwrap_or_default();
    args.extend(config.cmd.clone().unwrap_or_default());
    Ok(Some(ContainerInfo {
        id: r.id.unwrap_or_default(),
        name: r.name.map(|n| n.trim_start_matches('/').to_string()).unwrap_or_else(|| name.to_string()),
        // The name it was created from, not the sha256 id.
        image: config.image.or(r.image).unwrap_or_default(),
        running,
        restarting: state.restarting.unwrap_or(false),
        exit_code: if running { None } else { state.exit_code },
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        args,
        env: config.env.unwrap_or_default(),
        binds,
    }))
}

/// Every container carrying `label` ([`Host::list_containers`]).
pub(super) async fn list_containers(host: &SshHost, label: &str) -> HostResult<Vec<ListedContainer>> {
    let filters = std::collections::HashMap::from([("label", vec![label])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let listed = match host.docker.list_containers(Some(options)).await {
        Ok(l) => l,
        Err(e) => return Err(host.docker_err("list containers", e).await),
    };
    Ok(listed
        .into_iter()
        .filter_map(|c| {
            let name = c.names?.into_iter().next()?.trim_start_matches('/').to_string();
            let running = c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
            Some(ListedContainer { name, running, labels: c.labels.unwrap_or_default().into_iter().collect() })
        })
        .collect())
}

/// Creates a container; returns its id ([`Host::create_container`]).
pub(super) async fn create_container(host: &SshHost, spec: &ContainerSpec) -> HostResult<String> {
    let env = spec.env.clone();
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
        env: (!env.is_empty()).then_some(env),
        labels: (!spec.labels.is_empty()).then(|| spec.labels.clone().into_iter().collect()),
        host_config: Some(HostConfig {
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            network_mode: spec.network_host.then(|| "host".to_string()),
            pid_mode: spec.pid_host.then(|| "host".to_string()),
            restart_policy: Some(DockerRestart {
                name: Some(match spec.restart {
                    RestartPolicy::No => RestartPolicyNameEnum::NO,
                    RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
                }),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::new().name(&spec.name).build();
    match host.docker.create_container(Some(options), body).await {
        Ok(r) => Ok(r.id),
        Err(e) => {
            let secrets: Vec<&Secret> = spec.secret_files.iter().map(|f| &f.content).collect();
            if status_of(&e) == Some(404) {
                return Err(HostError::ImageUnavailable {
                    host: host.addr.clone(),
                    image: spec.image.clone(),
                    reason: redact(&chain(&e), &secrets),
                });
            }
            let err = host.docker_err("create container", e).await;
            Err(redact_error(err, &secrets))
        }
    }
}

/// Starts a created container ([`Host::start_container`]).
pub(super) async fn start_container(host: &SshHost, name: &str) -> HostResult<()> {
    match host.docker.start_container(name, None::<StartContainerOptions>).await {
        Ok(()) => Ok(()),
        Err(e) => Err(host.docker_err("start container", e).await),
    }
}

/// Waits for a container to exit; returns its exit code ([`Host::wait_container`]).
pub(super) async fn wait_container(host: &SshHost, name: &str) -> HostResult<i64> {
    // Docker API < 1.30 answers only once the container has exited: callers wait when its
    // output has ended, so the usual request timeout is ample.
    let options = WaitContainerOptionsBuilder::new().condition("not-running").build();
    let mut stream = host.docker.wait_container(name, Some(options));
    match stream.next().await {
        Some(Ok(r)) => Ok(r.status_code),
        // bollard reports a non-zero exit as an error; for us it is an answer.
        Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(host.docker_err("wait for container", e).await),
        None => Err(HostError::Docker {
            host: host.addr.clone(),
            op: "wait for container".into(),
            reason: format!("Docker ended the wait for {name} without an exit code"),
            transient: true,
        }),
    }
}

/// The container's output, followed ([`Host::follow_logs`]).
pub(super) async fn follow_logs(host: &SshHost, name: &str) -> HostResult<LogStream> {
    let options = LogsOptionsBuilder::new().follow(true).stdout(true).stderr(true).tail("all").build();
    let addr = host.addr.clone();
    let container = name.to_string();
    let stream = host.docker.logs(name, Some(options)).map(move |item| match item {
        Ok(chunk) => Ok(chunk.into_bytes()),
        Err(e) => Err(HostError::Docker {
            host: addr.clone(),
            op: format!("follow the output of {container}"),
            // A missing container will not appear by trying again; a broken stream may.
            transient: status_of(&e) != Some(404),
            reason: chain(&e),
        }),
    });
    Ok(Box::pin(stream))
}

/// Stops a running container ([`Host::stop_container`]).
pub(super) async fn stop_container(host: &SshHost, name: &str) -> HostResult<()> {
    match host.docker.stop_container(name, None::<StopContainerOptions>).await {
        Ok(()) => Ok(()),
        Err(e) => Err(host.docker_err("stop container", e).await),
    }
}

/// Removes a container, running or not ([`Host::remove_container`]).
pub(super) async fn remove_container(host: &SshHost, name: &str) -> HostResult<bool> {
    let options = RemoveContainerOptionsBuilder::new().force(true).v(false).build();
    match host.docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(host.docker_err("remove container", e).await),
    }
}
