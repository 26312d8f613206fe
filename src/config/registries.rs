//! `private_registries`: whose credentials pull an image, and how a default registry renames
//! default images, both decided as RKE decides them.
//!
//! RKE keys its registries by `url` (an empty one is `docker.io`; a later entry with the same
//! url replaces an earlier one) and looks an image up by the image's registry host, or host
//! plus path when the repository has more than two parts (`docker/docker.go`
//! `GetImageRegistryConfig`): `reg.example.com/team/rancher/etcd` is looked up as
//! `reg.example.com/team`. The first registry with `is_default` is written in front of every
//! image RKE picks by default (`cluster/defaults.go` `d`), never in front of an image that
//! cluster.yml names itself.

use super::raw::RawRegistry;
use super::validate::Validator;
use crate::secret::Secret;

/// Docker Hub's name in image references (RKE's `DockerRegistryURL`).
pub const DOCKER_HUB: &str = "docker.io";

/// How pulls from a registry authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    /// `user` and `password`, sent with each pull (both may be empty, as RKE sends them).
    Basic { user: String, password: Secret },
    /// `ecr_credential_plugin` with no user and password: RKE asks AWS for a token.
    EcrPlugin,
}

/// One registry of `private_registries`, as RKE keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateRegistry {
    /// Its position in `private_registries` (for diagnostics).
    pub index: usize,
    /// What it is matched by: `url`, or `docker.io` when that is empty.
    pub url: String,
    pub auth: RegistryAuth,
}

/// Every usable registry, and the default one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registries {
    entries: Vec<PrivateRegistry>,
    default_url: Option<String>,
}

impl Registries {
    /// The registry whose credentials pull `image`, if any.
    pub fn for_image(&self, image: &str) -> Option<&PrivateRegistry> {
        let key = registry_key(image)?;
        self.entries.iter().find(|r| r.url == key)
    }

    /// The `url` of the first registry with `is_default` (when not empty).
    pub fn default_url(&self) -> Option<&str> {
        self.default_url.as_deref()
    }
}

/// The key RKE looks `image` up by: its registry host (`docker.io` for Docker Hub names),
/// followed by the repository path but its last two parts when it has more than two.
pub fn registry_key(image: &str) -> Option<String> {
    let name = image.split('@').next().unwrap_or(image).trim();
    if name.is_empty() {
        return None;
    }
    // Docker's rule (distribution's `splitDockerDomain`): the first part is a registry
    // when it looks like a host name.
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => (DOCKER_HUB, name),
    };
    let domain = if domain == "index.docker.io" { DOCKER_HUB } else { domain };
    let path = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => &rest[..i],
        _ => rest,
    };
    let mut parts: Vec<&str> = path.split('/').collect();
    if domain == DOCKER_HUB && parts.len() == 1 {
        parts.insert(0, "library");
    }
    Some(if parts.len() > 2 { format!("{domain}/{}", parts[..parts.len() - 2].join("/")) } else { domain.to_string() })
}

/// A default image as RKE names it when a registry is the default (RKE's `d`).
pub fn with_default_registry(image: &str, default_url: Option<&str>) -> String {
    match default_url {
        Some(url) if !url.is_empty() => format!("{url}/{image}"),
        _ => image.to_string(),
    }
}

fn text(v: &Option<super::lenient::ScalarString>) -> Option<String> {
    v.as_ref().map(|x| x.0.trim().to_string()).filter(|x| !x.is_empty())
}

impl Validator<'_> {
    /// `private_registries`, as RKE's map of them; warns about entries that can never be used.
    pub(super) fn registries(&mut self, raw: Vec<RawRegistry>) -> Registries {
        let mut out = Registries::default();
        let mut default_at: Option<usize> = None;
        for (i, r) in raw.into_iter().enumerate() {
            let base = format!("private_registries[{i}]");
            let written = text(&r.url);
            if let Some(u) = &written
                && (u.contains("://") || u.ends_with('/') || u.contains(char::is_whitespace))
            {
                self.warning(
                    &format!("{base}.url"),
                    format!("registry url `{u}` never matches an image, so its credentials are never used"),
                    "never matches",
                    Some(
                        "RKE compares the url with the image's registry as written in image names: \
                         host[:port] or host[:port]/path, without a scheme or a final `/`",
                    ),
                );
            }
            if r.is_default.is_some_and(|b| b.0) {
                match default_at {
                    None => {
                        default_at = Some(i);
                        out.default_url = written.clone();
                    }
                    Some(first) => self.warning(
                        &format!("{base}.is_default"),
                        format!("only the first default registry counts (private_registries[{first}]), as in RKE"),
                        "not the default",
                        Some("keep `is_default: true` on one registry"),
                    ),
                }
            }
            let user = r.user.as_ref().map(|u| u.0.clone()).unwrap_or_default();
            let password = r.password.as_ref().map(|p| p.0.clone()).unwrap_or_default();
            // RKE uses the plugin only when the entry has neither user nor password.
            let auth = if user.is_empty() && password.is_empty() && r.ecr_credential_plugin.is_some() {
                RegistryAuth::EcrPlugin
            } else {
                RegistryAuth::Basic { user, password: Secret::new(password) }
            };
            let url = written.unwrap_or_else(|| DOCKER_HUB.to_string());
            if let Some(earlier) = out.entries.iter().position(|e| e.url == url) {
                let replaced = out.entries.remove(earlier);
                self.warning(
                    &format!("private_registries[{}]", replaced.index),
                    format!(
                        "private_registries[{i}] has the same url {url}; RKE uses the last one, and so does rkectl"
                    ),
                    "replaced",
                    Some("keep one entry per registry"),
                );
            }
            out.entries.push(PrivateRegistry { index: i, url, auth });
        }
        out
    }

    /// Refuses what rkectl cannot do for the images it pulls.
    pub(super) fn registry_for_pulls(&mut self, registries: &Registries, image: &str) {
        if let Some(r) = registries.for_image(image)
            && r.auth == RegistryAuth::EcrPlugin
        {
            let p = self.loc.at_key(
                &format!("private_registries[{}].ecr_credential_plugin", r.index),
                format!(
                    "the etcd image {image} comes from {}, whose ecr_credential_plugin rkectl cannot use: \
                     it does not fetch ECR tokens",
                    r.url
                ),
                "not supported by rkectl",
                Some(
                    "give this registry `user: AWS` and `password:` a token from \
                     `aws ecr get-login-password` (RKE then uses them too), or name an etcd image \
                     from another registry under system_images.etcd"
                        .into(),
                ),
            );
            self.problems.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_ETCD_IMAGE, LoadedConfig, parse};
    use std::path::Path;

    const NODES: &str = "nodes:\n  - address: 10.0.0.1\n    user: root\n    role: [etcd]\n";

    fn load(text: &str) -> LoadedConfig {
        parse(Path::new("cluster.yml"), format!("{NODES}{text}")).unwrap_or_else(|e| panic!("{:?}", e.problems()))
    }

    #[test]
    fn the_default_registry_renames_the_default_etcd_image_only() {
        let regs = "private_registries:\n  - url: reg.example.com:5000\n    user: ci\n    password: s3cret!\n    is_default: true\n";
        let c = load(regs).cluster;
        assert_eq!(c.etcd.image, format!("reg.example.com:5000/{DEFAULT_ETCD_IMAGE}"));
        let r = c.registry_for(&c.etcd.image).expect("its registry");
        assert_eq!((r.index, r.url.as_str()), (0, "reg.example.com:5000"));
        assert_eq!(r.auth, RegistryAuth::Basic { user: "ci".into(), password: Secret::new("s3cret!") });
        assert!(!format!("{c:?}").contains("s3cret!"), "the password never prints");

        let named = load(&format!("{regs}system_images:\n  etcd: quay.io/coreos/etcd:v3.5.9\n")).cluster;
        assert_eq!(named.etcd.image, "quay.io/coreos/etcd:v3.5.9", "an image cluster.yml names is kept");
        assert!(named.registry_for(&named.etcd.image).is_none());

        let not_default = load(&regs.replace("is_default: true", "is_default: false")).cluster;
        assert_eq!(not_default.etcd.image, DEFAULT_ETCD_IMAGE);
    }

    #[test]
    fn an_empty_url_is_docker_hub_and_the_last_entry_for_a_url_wins() {
        let text = "private_registries:\n  - user: first\n    password: a\n  - url: docker.io\n    user: second\n    password: b\n";
        let cfg = load(text);
        let r = cfg.cluster.registry_for("rancher/mirrored-coreos-etcd:v3.5.16").expect("Docker Hub's");
        assert_eq!((r.index, r.url.as_str()), (1, "docker.io"));
        let [w] = &cfg.warnings[..] else { panic!("{:?}", cfg.warnings) };
        assert!(w.message.contains("private_registries[1] has the same url docker.io"), "{}", w.message);
        assert_eq!(w.line, Some(6), "at the entry that is replaced");
    }

    #[test]
    fn a_url_that_can_never_match_is_a_warning_at_its_line() {
        let cfg = load("private_registries:\n  - url: https://reg.example.com/\n    user: u\n    password: p\n");
        let [w] = &cfg.warnings[..] else { panic!("{:?}", cfg.warnings) };
        assert!(w.message.contains("never matches an image"), "{}", w.message);
        assert_eq!((w.line, w.column), (Some(6), Some(10)));
    }

    #[test]
    fn the_ecr_plugin_is_refused_only_where_rkectl_would_need_it() {
        let ecr = "private_registries:\n  - url: 1234.dkr.ecr.eu-west-1.amazonaws.com\n    is_default: true\n    ecr_credential_plugin:\n      aws_access_key_id: AKIA\n";
        let err = parse(Path::new("cluster.yml"), format!("{NODES}{ecr}")).expect_err("refused");
        let [p] = err.problems() else { panic!("{:?}", err.problems()) };
        assert!(p.message.contains("ecr_credential_plugin rkectl cannot use"), "{}", p.message);
        assert_eq!((p.line, p.column), (Some(8), Some(5)));
        // With a user and password RKE does not use the plugin, and neither does rkectl.
        let c = load(&ecr.replace("    is_default", "    user: AWS\n    password: tok\n    is_default")).cluster;
        assert!(matches!(c.registry_for(&c.etcd.image).map(|r| &r.auth), Some(RegistryAuth::Basic { .. })));
        // Another registry's plugin is nothing rkectl needs.
        load(&ecr.replace("    is_default: true\n", ""));
    }

    #[test]
    fn images_are_keyed_by_registry_as_rke_keys_them() {
        for (image, key) in [
            ("rancher/mirrored-coreos-etcd:v3.5.16", "docker.io"),
            ("etcd", "docker.io"),
            ("docker.io/rancher/etcd:v1", "docker.io"),
            ("index.docker.io/rancher/etcd", "docker.io"),
            ("reg.example.com/rancher/etcd:v1", "reg.example.com"),
            ("reg.example.com:5000/etcd:v1", "reg.example.com:5000"),
            ("localhost/etcd", "localhost"),
            ("reg.example.com/team/rancher/etcd:v1", "reg.example.com/team"),
            ("reg.example.com/a/b/rancher/etcd@sha256:abcd", "reg.example.com/a/b"),
            ("docker.io/team/rancher/etcd", "docker.io/team"),
            ("10.77.0.1:5443/lab/etcd:v3.4.23", "10.77.0.1:5443"),
        ] {
            assert_eq!(registry_key(image).as_deref(), Some(key), "{image}");
        }
        assert_eq!(registry_key(""), None);
    }

    #[test]
    fn the_default_registry_prefixes_the_image() {
        assert_eq!(with_default_registry("rancher/etcd:v1", Some("reg:5000")), "reg:5000/rancher/etcd:v1");
        assert_eq!(with_default_registry("rancher/etcd:v1", Some("")), "rancher/etcd:v1");
        assert_eq!(with_default_registry("rancher/etcd:v1", None), "rancher/etcd:v1");
    }
}
