//! Objects read through the Kubernetes API for a module: a ConfigMap's `binaryData` (the module
//! itself) and a `kubernetes.io/dockerconfigjson` Secret (an OCI pull secret).

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use oci_client::secrets::RegistryAuth;

use super::error::FetchError;
use super::oci::registry_auth_from_docker_config;

/// `binaryData[key]` of ConfigMap `namespace/name`, refused when larger than `max_bytes`.
pub(crate) async fn read_config_map(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
    max_bytes: u64,
) -> Result<Vec<u8>, FetchError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = match api.get_opt(name).await {
        Ok(Some(cm)) => cm,
        Ok(None) => {
            return Err(FetchError::ConfigMapNotFound {
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        }
        Err(e) => {
            return Err(FetchError::Api {
                what: format!("ConfigMap {namespace}/{name}"),
                detail: e.to_string(),
            });
        }
    };
    let binary = cm.binary_data.unwrap_or_default();
    let Some(bytes) = binary.get(key) else {
        let note = if cm.data.as_ref().is_some_and(|d| d.contains_key(key)) {
            " (it is under data, which holds text; a module is binary: create the ConfigMap \
             with `kubectl create configmap NAME --from-file=KEY=module.wasm`)"
                .to_string()
        } else {
            let mut keys: Vec<&String> = binary.keys().collect();
            keys.sort();
            format!(
                " (binaryData keys: {})",
                if keys.is_empty() {
                    "none".to_string()
                } else {
                    keys.iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        };
        return Err(FetchError::ConfigMapKeyMissing {
            namespace: namespace.to_string(),
            name: name.to_string(),
            key: key.to_string(),
            note,
        });
    };
    if bytes.0.len() as u64 > max_bytes {
        return Err(FetchError::TooLarge {
            limit: max_bytes,
            size: Some(bytes.0.len() as u64),
            source_desc: format!("configMap {namespace}/{name} key {key}"),
        });
    }
    Ok(bytes.0.clone())
}

/// The credentials for `registry` in pull secret `namespace/name`.
pub(crate) async fn read_pull_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    registry: &str,
) -> Result<RegistryAuth, FetchError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match api.get_opt(name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(FetchError::PullSecretNotFound {
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        }
        Err(e) => {
            return Err(FetchError::Api {
                what: format!("Secret {namespace}/{name}"),
                detail: e.to_string(),
            });
        }
    };
    let invalid = |detail: String| FetchError::PullSecretInvalid {
        namespace: namespace.to_string(),
        name: name.to_string(),
        detail,
    };
    let config = [".dockerconfigjson", ".dockercfg"]
        .iter()
        .find_map(|k| crate::secret_data::value(&secret, k));
    let Some(config) = config else {
        return Err(invalid(
            "it has no .dockerconfigjson key; create it with `kubectl create secret \
             docker-registry`"
                .into(),
        ));
    };
    registry_auth_from_docker_config(config, registry).map_err(invalid)
}
