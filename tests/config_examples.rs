//! The example cluster.yml files parse unchanged, with the reference's defaults.

use rkectl::config::{self, RecurringSnapshots, Role};
use std::path::Path;

fn example(name: &str) -> config::LoadedConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    config::load(&p).unwrap_or_else(|e| panic!("{name}: {:?}", miette::Report::new(e)))
}

#[test]
fn a_cluster_yml_with_every_part_of_rke_parses_unchanged() {
    let loaded = example("rke-cluster-full.yml");
    // RKE takes etcd's image from system_images and ignores services.etcd.image: so does
    // rkectl, and says so with the line.
    let w: Vec<&str> = loaded.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(w.iter().any(|m| m.contains("services.etcd.image") && m.contains("ignored")), "{w:?}");
    // Every key in it is one RKE knows.
    assert!(!w.iter().any(|m| m.contains("unknown key")), "{w:?}");
    assert_eq!(loaded.warnings[0].line, Some(59));
    let c = loaded.cluster;
    assert_eq!(c.name, "mycluster");
    assert_eq!(c.nodes.len(), 3);
    assert_eq!(c.nodes[0].port, 2222);
    assert_eq!(c.nodes[1].port, 22);
    assert!(c.nodes[1].ssh.key.is_some());
    assert_eq!(c.nodes[2].internal_address(), "192.168.1.6");
    assert_eq!(c.etcd_nodes().count(), 1);
    assert_eq!(c.etcd.image, "rancher/coreos-etcd:v3.1.12");
    // How the nodes are reached: the bastion with its own key, certificates with the keys
    // they go with (the top-level one with the top-level key, on the node that names none).
    let b = c.bastion.as_ref().expect("bastion_host");
    assert_eq!((b.address.as_str(), b.user.as_str(), b.port), ("x.x.x.x", "ubuntu", 22));
    assert_eq!(b.ssh.key_path, Path::new("/home/user/.ssh/bastion_rsa"));
    let certs: Vec<Option<&str>> = c.nodes.iter().map(|n| n.ssh.cert.as_ref().map(|x| x.at.as_str())).collect();
    assert_eq!(certs, [Some("ssh_cert_path"), Some("nodes[1].ssh_cert_path"), Some("ssh_cert_path")]);
    // The image is named in system_images: the default registry does not rename it, and
    // it comes from Docker Hub, for which there are no credentials.
    assert!(c.registry_for(&c.etcd.image).is_none());
    assert_eq!(c.registry_for("registry.com/rancher/etcd:v1").map(|r| r.url.as_str()), Some("registry.com"));
    assert_eq!(c.kubernetes_service_ips, ["10.43.0.1".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(c.etcd.extra_args.get("heartbeat-interval").map(String::as_str), Some("500"));
    // backup_config overrides the legacy settings, and says which it overrides.
    match &c.etcd.recurring {
        RecurringSnapshots::BackupConfig {
            interval_hours: 12,
            retention: 6,
            overrides_legacy: Some((cr, re)),
            drill: false,
        } => {
            assert_eq!((cr.to_string().as_str(), re.to_string().as_str()), ("6h0m0s", "24h0m0s"));
        }
        other => panic!("{other:?}"),
    }
    let s3 = c.etcd.s3.as_ref().unwrap();
    assert_eq!(
        (s3.bucket.as_str(), s3.folder.as_deref(), s3.endpoint.as_str()),
        ("s3-bucket-name", Some("backups"), "s3.amazonaws.com")
    );
    assert_eq!(format!("{:?}", s3.secret_key), "***");
}

#[test]
fn the_reference_two_node_example_gets_the_reference_defaults() {
    let c = example("two-node.yml").cluster;
    assert_eq!(c.nodes.len(), 2);
    assert_eq!(c.nodes[0].roles, [Role::Controlplane, Role::Worker]);
    assert_eq!(c.etcd_nodes().map(|n| n.address.as_str()).collect::<Vec<_>>(), ["10.0.0.2"]);
    assert_eq!(c.nodes[1].port, 22);
    assert_eq!(c.nodes[1].docker_socket, "/var/run/docker.sock");
    assert_eq!(c.etcd.recurring, RecurringSnapshots::Disabled, "recurring snapshots are off by default");
}

#[test]
fn legacy_recurring_snapshots_default_to_5m0s_and_24h() {
    let p = Path::new("cluster.yml");
    let c = config::parse(
        p,
        "nodes:\n  - {address: 10.0.0.2, user: u, role: [etcd]}\nservices:\n  etcd:\n    snapshot: true\n".into(),
    )
    .unwrap()
    .cluster;
    match c.etcd.recurring {
        RecurringSnapshots::Legacy { creation, retention } => {
            assert_eq!((creation.to_string().as_str(), retention.to_string().as_str()), ("5m0s", "24h0m0s"));
        }
        other => panic!("{other:?}"),
    }
}
