//! Who reaches what: `authentication`, `authorization`, `bastion_host` and
//! `private_registries`.

use super::Shape::*;
use super::{Key, k};

/// `AuthnConfig`.
pub(super) const AUTHN_CONFIG: &[Key] =
    &[k("strategy", Value), k("sans", Value), k("webhook", Struct(AUTH_WEBHOOK_CONFIG))];

/// `AuthWebhookConfig`.
pub(super) const AUTH_WEBHOOK_CONFIG: &[Key] = &[k("config_file", Value), k("cache_timeout", Value)];

/// `AuthzConfig`.
pub(super) const AUTHZ_CONFIG: &[Key] = &[k("mode", Value), k("options", Free)];

/// `PrivateRegistry`.
pub(super) const PRIVATE_REGISTRY: &[Key] = &[
    k("url", Value),
    k("user", Value),
    k("password", Value),
    k("is_default", Value),
    k("ecr_credential_plugin", Struct(ECR_CREDENTIAL_PLUGIN)),
];

/// `ECRCredentialPlugin`.
pub(super) const ECR_CREDENTIAL_PLUGIN: &[Key] =
    &[k("aws_access_key_id", Value), k("aws_secret_access_key", Value), k("aws_session_token", Value)];

/// `BastionHost`.
pub(super) const BASTION_HOST: &[Key] = &[
    k("address", Value),
    k("port", Value),
    k("user", Value),
    k("ssh_agent_auth", Value),
    k("ssh_key", Value),
    k("ssh_key_path", Value),
    k("ssh_cert", Value),
    k("ssh_cert_path", Value),
    k("ignore_proxy_env_vars", Value),
];
