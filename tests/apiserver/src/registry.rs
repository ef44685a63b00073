//! The resource registry: which kinds the server serves and how.
//!
//! Exists so the store and the HTTP front end stay generic: every kind (built in or
//! registered at runtime from a CustomResourceDefinition) is described by one
//! [`ResourceType`], and URL paths are resolved against this table. A custom kind carries
//! its CRD's compiled schemas ([`Schemas`]), so writes are pruned and checked without
//! recompiling.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use crate::error::ApiError;
use crate::meta::meta_str;
use crate::schema::{FieldValidation, Schema, Schemas};

/// Description of one served resource (a plural in a group, served at some versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    pub group: String,
    /// Versions served; the first is the preferred (storage) version.
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub status_subresource: bool,
    pub short_names: Vec<String>,
    /// Registered from a CRD (status is dropped on create, as for custom resources).
    pub custom: bool,
    /// The CRD's compiled `openAPIV3Schema`s by version (empty for built-in kinds).
    pub schemas: Schemas,
}

impl ResourceType {
    /// A resource served at one version.
    pub fn new(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        status: bool,
    ) -> Self {
        ResourceType {
            group: group.into(),
            versions: vec![version.into()],
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            status_subresource: status,
            short_names: vec![],
            custom: false,
            schemas: Schemas::default(),
        }
    }

    /// Storage key: group and plural (versions share one storage, no conversion).
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// `apiVersion` for a version of this resource.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// `apiVersion` of the preferred version.
    pub fn preferred_api_version(&self) -> String {
        self.api_version(&self.versions[0])
    }

    /// The version a write of `version` is admitted with (the preferred version when `None`
    /// or not served), and its compiled schema if it has one.
    fn schema(&self, version: Option<&str>) -> Option<(&str, &Schema)> {
        let served = version.and_then(|v| self.versions.iter().find(|s| *s == v));
        let version = served.or(self.versions.first())?.as_str();
        self.schemas.get(version).map(|s| (version, s))
    }

    /// Drop from `obj` the fields the schema of `version` does not specify (see
    /// [`crate::schema::prune`]) and judge them by `validation`: the warnings for the client, or
    /// the `Strict` refusal. Kinds without a schema (built-in kinds) are left alone.
    pub fn prune(
        &self,
        obj: &mut Value,
        version: Option<&str>,
        validation: FieldValidation,
    ) -> Result<Vec<String>, ApiError> {
        let Some((version, schema)) = self.schema(version) else {
            return Ok(Vec::new());
        };
        let unknown = schema.prune(obj);
        validation.judge(&unknown, &self.kind, version)
    }

    /// Check an object about to be stored against the schema of `version` (the preferred
    /// version when `None` or not served); `old` is the stored object on updates.
    pub fn check(
        &self,
        new: &Value,
        old: Option<&Value>,
        version: Option<&str>,
    ) -> Result<(), ApiError> {
        let Some((_, schema)) = self.schema(version) else {
            return Ok(());
        };
        schema
            .check(new, old)
            .map_err(|causes| ApiError::InvalidObject {
                group: self.group.clone(),
                kind: self.kind.clone(),
                name: meta_str(new, "name").unwrap_or_default().to_string(),
                causes,
            })
    }

    /// Describe a CustomResourceDefinition, compiling its schemas (a pattern or CEL rule
    /// that does not compile refuses the CRD).
    pub fn from_crd(crd: &CustomResourceDefinition) -> Result<Self, ApiError> {
        let spec = &crd.spec;
        let mut versions: Vec<_> = spec.versions.iter().filter(|v| v.served).collect();
        // Storage version first, as the preferred one.
        versions.sort_by_key(|v| !v.storage);
        if versions.is_empty() {
            return Err(ApiError::Invalid(
                "spec.versions: Invalid value: must have at least one served version".into(),
            ));
        }
        if spec.group.is_empty() || spec.names.plural.is_empty() || spec.names.kind.is_empty() {
            return Err(ApiError::Invalid(
                "spec.group, spec.names.plural and spec.names.kind are required".into(),
            ));
        }
        let status = versions.iter().any(|v| {
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        });
        let namespaced = match spec.scope.as_str() {
            "Namespaced" => true,
            "Cluster" => false,
            other => {
                return Err(ApiError::Invalid(format!(
                    "spec.scope: Unsupported value: \"{other}\""
                )));
            }
        };
        let schemas = Schemas::from_crd(crd).map_err(|causes| ApiError::InvalidObject {
            group: "apiextensions.k8s.io".into(),
            kind: "CustomResourceDefinition".into(),
            name: crd.metadata.name.clone().unwrap_or_default(),
            causes,
        })?;
        Ok(ResourceType {
            group: spec.group.clone(),
            versions: versions.iter().map(|v| v.name.clone()).collect(),
            plural: spec.names.plural.clone(),
            singular: spec
                .names
                .singular
                .clone()
                .unwrap_or_else(|| spec.names.kind.to_lowercase()),
            kind: spec.names.kind.clone(),
            namespaced,
            status_subresource: status,
            short_names: spec.names.short_names.clone().unwrap_or_default(),
            custom: true,
            schemas,
        })
    }
}

/// All served resources, keyed by `group/plural`.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<String, ResourceType>,
}

impl Registry {
    /// The built-in kinds the dev server serves.
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        for t in [
            ResourceType::new("", "v1", "namespaces", "Namespace", false, true),
            ResourceType::new("", "v1", "nodes", "Node", false, true),
            ResourceType::new("", "v1", "pods", "Pod", true, true),
            ResourceType::new("", "v1", "secrets", "Secret", true, false),
            ResourceType::new("", "v1", "configmaps", "ConfigMap", true, false),
            ResourceType::new("", "v1", "events", "Event", true, false),
            ResourceType::new("", "v1", "services", "Service", true, true),
            ResourceType::new("", "v1", "serviceaccounts", "ServiceAccount", true, false),
            ResourceType::new("coordination.k8s.io", "v1", "leases", "Lease", true, false),
            ResourceType::new("events.k8s.io", "v1", "events", "Event", true, false),
            ResourceType::new(
                "policy",
                "v1",
                "poddisruptionbudgets",
                "PodDisruptionBudget",
                true,
                true,
            ),
            ResourceType::new("apps", "v1", "deployments", "Deployment", true, true),
            ResourceType::new(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                true,
            ),
        ] {
            r.insert(t);
        }
        r
    }

    /// Add or replace a resource description.
    pub fn insert(&mut self, t: ResourceType) {
        self.types.insert(t.key(), t);
    }

    /// Remove a resource (CRD deletion).
    pub fn remove(&mut self, group: &str, plural: &str) -> Option<ResourceType> {
        self.types.remove(&format!("{group}/{plural}"))
    }

    /// A resource by group and plural (any version).
    pub fn get(&self, group: &str, plural: &str) -> Option<&ResourceType> {
        self.types.get(&format!("{group}/{plural}"))
    }

    /// Resolve a plural served at `group/version`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&format!("{group}/{plural}"))
            .filter(|t| t.versions.iter().any(|v| v == version))
    }

    /// Find a resource by group and kind.
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .values()
            .find(|t| t.group == group && t.kind == kind)
    }

    /// Find a resource by plural, any group (first match; core group wins).
    pub fn by_plural(&self, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&format!("/{plural}"))
            .or_else(|| self.types.values().find(|t| t.plural == plural))
    }

    /// All resources.
    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    /// Whether `group/version` is served at all.
    pub fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.types
            .values()
            .any(|t| t.group == group && t.versions.iter().any(|v| v == version))
    }
}
