//! `cloud_provider`: one struct per provider RKE configures.

use super::Shape::*;
use super::{Key, k};

/// `CloudProvider`.
pub(super) const CLOUD_PROVIDER: &[Key] = &[
    k("name", Value),
    k("useInstanceMetadataHostname", Value),
    k("awsCloudProvider", Struct(AWS_CLOUD_PROVIDER)),
    k("azureCloudProvider", Struct(AZURE_CLOUD_PROVIDER)),
    k("openstackCloudProvider", Struct(OPENSTACK_CLOUD_PROVIDER)),
    k("vsphereCloudProvider", Struct(VSPHERE_CLOUD_PROVIDER)),
    k("harvesterCloudProvider", Struct(HARVESTER_CLOUD_PROVIDER)),
    k("customCloudProvider", Value),
];

/// `AWSCloudProvider`.
pub(super) const AWS_CLOUD_PROVIDER: &[Key] =
    &[k("global", Struct(GLOBAL_AWS_OPTS)), k("service_override", Map(SERVICE_OVERRIDE))];

/// `GlobalAwsOpts`.
pub(super) const GLOBAL_AWS_OPTS: &[Key] = &[
    k("zone", Value),
    k("vpc", Value),
    k("subnet-id", Value),
    k("routetable-id", Value),
    k("role-arn", Value),
    k("kubernetes-cluster-tag", Value),
    k("kubernetes-cluster-id", Value),
    k("disable-security-group-ingress", Value),
    k("elb-security-group", Value),
    k("disable-strict-zone-check", Value),
];

/// `ServiceOverride`.
pub(super) const SERVICE_OVERRIDE: &[Key] = &[
    k("service", Value),
    k("region", Value),
    k("url", Value),
    k("signing-region", Value),
    k("signing-method", Value),
    k("signing-name", Value),
];

/// `AzureCloudProvider`.
pub(super) const AZURE_CLOUD_PROVIDER: &[Key] = &[
    k("cloud", Value),
    k("tenantId", Value),
    k("subscriptionId", Value),
    k("resourceGroup", Value),
    k("location", Value),
    k("vnetName", Value),
    k("vnetResourceGroup", Value),
    k("subnetName", Value),
    k("securityGroupName", Value),
    k("securityGroupResourceGroup", Value),
    k("routeTableName", Value),
    k("primaryAvailabilitySetName", Value),
    k("vmType", Value),
    k("primaryScaleSetName", Value),
    k("aadClientId", Value),
    k("aadClientSecret", Value),
    k("aadClientCertPath", Value),
    k("aadClientCertPassword", Value),
    k("cloudProviderBackoff", Value),
    k("cloudProviderBackoffRetries", Value),
    k("cloudProviderBackoffExponent", Value),
    k("cloudProviderBackoffDuration", Value),
    k("cloudProviderBackoffJitter", Value),
    k("cloudProviderRateLimit", Value),
    k("cloudProviderRateLimitQPS", Value),
    k("cloudProviderRateLimitBucket", Value),
    k("useInstanceMetadata", Value),
    k("useManagedIdentityExtension", Value),
    k("userAssignedIdentityID", Value),
    k("maximumLoadBalancerRuleCount", Value),
    k("loadBalancerSku", Value),
    k("excludeMasterFromStandardLB", Value),
    k("tags", Value),
];

/// `OpenstackCloudProvider`.
pub(super) const OPENSTACK_CLOUD_PROVIDER: &[Key] = &[
    k("global", Struct(GLOBAL_OPENSTACK_OPTS)),
    k("load_balancer", Struct(LOAD_BALANCER_OPENSTACK_OPTS)),
    k("block_storage", Struct(BLOCK_STORAGE_OPENSTACK_OPTS)),
    k("route", Struct(ROUTE_OPENSTACK_OPTS)),
    k("metadata", Struct(METADATA_OPENSTACK_OPTS)),
];

/// `GlobalOpenstackOpts`.
pub(super) const GLOBAL_OPENSTACK_OPTS: &[Key] = &[
    k("auth-url", Value),
    k("username", Value),
    k("user-id", Value),
    k("password", Value),
    k("tenant-id", Value),
    k("tenant-name", Value),
    k("trust-id", Value),
    k("domain-id", Value),
    k("domain-name", Value),
    k("region", Value),
    k("ca-file", Value),
];

/// `LoadBalancerOpenstackOpts`.
pub(super) const LOAD_BALANCER_OPENSTACK_OPTS: &[Key] = &[
    k("lb-version", Value),
    k("use-octavia", Value),
    k("subnet-id", Value),
    k("floating-network-id", Value),
    k("lb-method", Value),
    k("lb-provider", Value),
    k("create-monitor", Value),
    k("monitor-delay", Value),
    k("monitor-timeout", Value),
    k("monitor-max-retries", Value),
    k("manage-security-groups", Value),
];

/// `BlockStorageOpenstackOpts`.
pub(super) const BLOCK_STORAGE_OPENSTACK_OPTS: &[Key] =
    &[k("bs-version", Value), k("trust-device-path", Value), k("ignore-volume-az", Value)];

/// `RouteOpenstackOpts`.
pub(super) const ROUTE_OPENSTACK_OPTS: &[Key] = &[k("router-id", Value)];

/// `MetadataOpenstackOpts`.
pub(super) const METADATA_OPENSTACK_OPTS: &[Key] = &[k("search-order", Value), k("request-timeout", Value)];

/// `VsphereCloudProvider`.
pub(super) const VSPHERE_CLOUD_PROVIDER: &[Key] = &[
    k("global", Struct(GLOBAL_VSPHERE_OPTS)),
    k("virtual_center", Map(VIRTUAL_CENTER_CONFIG)),
    k("network", Struct(NETWORK_VSHPERE_OPTS)),
    k("disk", Struct(DISK_VSPHERE_OPTS)),
    k("workspace", Struct(WORKSPACE_VSPHERE_OPTS)),
];

/// `GlobalVsphereOpts`.
pub(super) const GLOBAL_VSPHERE_OPTS: &[Key] = &[
    k("user", Value),
    k("password", Value),
    k("server", Value),
    k("port", Value),
    k("insecure-flag", Value),
    k("datacenter", Value),
    k("datacenters", Value),
    k("datastore", Value),
    k("working-dir", Value),
    k("soap-roundtrip-count", Value),
    k("vm-uuid", Value),
    k("vm-name", Value),
];

/// `VirtualCenterConfig`.
pub(super) const VIRTUAL_CENTER_CONFIG: &[Key] = &[
    k("user", Value),
    k("password", Value),
    k("port", Value),
    k("datacenters", Value),
    k("soap-roundtrip-count", Value),
];

/// `NetworkVshpereOpts`.
pub(super) const NETWORK_VSHPERE_OPTS: &[Key] = &[k("public-network", Value)];

/// `DiskVsphereOpts`.
pub(super) const DISK_VSPHERE_OPTS: &[Key] = &[k("scsicontrollertype", Value)];

/// `WorkspaceVsphereOpts`.
pub(super) const WORKSPACE_VSPHERE_OPTS: &[Key] = &[
    k("server", Value),
    k("datacenter", Value),
    k("folder", Value),
    k("default-datastore", Value),
    k("resourcepool-path", Value),
];

/// `HarvesterCloudProvider`.
pub(super) const HARVESTER_CLOUD_PROVIDER: &[Key] = &[k("cloud_config", Value)];
