//! RunPod's GraphQL operations, called through the host.
//!
//! Each method performs one operation (quote: one per region) and returns either the decoded
//! answer or the error the contract wants; the translation rules live in `mapping`.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tgp_provider_sdk::http::{self, GraphqlError};
use tgp_provider_sdk::{GpuSpec, LaunchRequest, ProviderError, user_data};

use crate::api::{
    self, DeployData, DeployInput, EnvVar, GpuType, GpuTypesData, Myself, MyselfData, Pod, PodData,
};
use crate::mapping;
use crate::settings::Settings;
use crate::tags;

/// Per-request timeout: RunPod's deploy mutations can take several seconds.
const TIMEOUT_MS: u32 = 30_000;

/// A client for one configured RunPod account (the host authenticates its requests).
pub struct Client {
    settings: Settings,
}

/// What terminating a pod found.
pub enum Terminated {
    Accepted,
    Unknown,
}

impl Client {
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Sends one GraphQL document; RunPod errors stay a [`GraphqlError`] for the caller to read.
    fn raw(&self, query: &str, variables: Value) -> Result<Value, GraphqlError> {
        // The host adds the credentials (`info` declares bearer with the configured secret).
        http::post(self.settings.graphql_url())
            .timeout(TIMEOUT_MS)
            .graphql(query, variables)
    }

    /// Sends one document and decodes `data`, classifying every failure.
    fn call<T: DeserializeOwned>(&self, query: &str, variables: Value) -> Result<T, ProviderError> {
        let data = self.raw(query, variables).map_err(mapping::graphql_error)?;
        decode(data)
    }

    /// `gpuTypes { lowestPrice(...) }` for one GPU type, once per region to price.
    pub fn gpu_types(
        &self,
        spec: &GpuSpec,
        gpu_id: &str,
    ) -> Result<Vec<(String, Vec<GpuType>)>, ProviderError> {
        let cloud = self.settings.cloud()?;
        let mut answers = Vec::new();
        for region in mapping::regions_to_price(spec) {
            let mut lowest = json!({ "gpuCount": spec.count });
            if let Some(secure) = cloud.secure_flag() {
                lowest["secureCloud"] = json!(secure);
            }
            if let Some(dc) = mapping::data_center(&region) {
                lowest["dataCenterId"] = json!(dc);
            }
            let variables = json!({
                "gpuTypesInput": { "id": gpu_id },
                "lowestPriceInput": lowest,
            });
            let data: GpuTypesData = self.call(api::QUOTE_QUERY, variables)?;
            answers.push((region, data.gpu_types.unwrap_or_default()));
        }
        Ok(answers)
    }

    /// `podFindAndDeployOnDemand` or `podRentInterruptable`.
    pub fn deploy(
        &self,
        req: &LaunchRequest,
        canonical: &str,
        gpu_id: &str,
    ) -> Result<Pod, ProviderError> {
        let input = deploy_input(&self.settings, req, canonical, gpu_id)?;
        let mutation = if req.offer.spot {
            api::deploy_spot_mutation()
        } else {
            api::deploy_on_demand_mutation()
        };
        let data: DeployData = self.call(&mutation, json!({ "input": input }))?;
        data.pod_find_and_deploy_on_demand
            .or(data.pod_rent_interruptable)
            .ok_or_else(|| ProviderError::internal("RunPod answered the deploy without a pod"))
    }

    /// `pod(input: {podId})`; `None` when RunPod does not know the id.
    pub fn pod(&self, pod_id: &str) -> Result<Option<Pod>, ProviderError> {
        let data: PodData = self.call(&api::pod_query(pod_id), json!({}))?;
        Ok(data.pod)
    }

    /// `podTerminate`, with "pod not found to terminate" as [`Terminated::Unknown`].
    pub fn terminate(&self, pod_id: &str) -> Result<Terminated, ProviderError> {
        match self.raw(&api::terminate_mutation(pod_id), json!({})) {
            Ok(_) => Ok(Terminated::Accepted),
            Err(e) if mapping::is_unknown_pod_on_terminate(&e) => Ok(Terminated::Unknown),
            Err(e) => Err(mapping::graphql_error(e)),
        }
    }

    /// `myself { clientBalance currentSpendPerHr }`.
    pub fn balance(&self) -> Result<Myself, ProviderError> {
        Ok(self
            .call::<MyselfData>(api::BALANCE_QUERY, json!({}))?
            .myself)
    }

    /// `myself { pods { ... } }`.
    pub fn pods(&self) -> Result<Vec<Pod>, ProviderError> {
        Ok(self
            .call::<MyselfData>(&api::pods_query(), json!({}))?
            .myself
            .pods
            .unwrap_or_default())
    }
}

fn decode<T: DeserializeOwned>(data: Value) -> Result<T, ProviderError> {
    serde_json::from_value(data)
        .map_err(|e| ProviderError::internal(format!("unexpected RunPod answer: {e}")))
}

/// The deploy input for a launch request: our name, the ownership tags and launch metadata in
/// the environment, the bootstrap document in `TGP_USER_DATA`, and the price guard (on-demand
/// ceiling or spot bid) taken from the quoted offer.
pub fn deploy_input(
    settings: &Settings,
    req: &LaunchRequest,
    canonical: &str,
    gpu_id: &str,
) -> Result<DeployInput, ProviderError> {
    if req.offer.count == 0 {
        return Err(ProviderError::invalid("offer.count", "must be at least 1"));
    }
    if req.instance_name.trim().is_empty() {
        return Err(ProviderError::invalid("instance-name", "must not be empty"));
    }
    let mut env = vec![
        EnvVar {
            key: tags::TAGS_VAR.into(),
            value: tags::encode(&req.tags),
        },
        EnvVar {
            key: tags::GPU_VAR.into(),
            value: canonical.into(),
        },
        EnvVar {
            key: tags::REGION_VAR.into(),
            value: req.offer.region.clone(),
        },
    ];
    if req.user_data.is_some() {
        // Sealed: the host fills the document into this JSON string of the request body.
        env.push(EnvVar {
            key: tags::USER_DATA_VAR.into(),
            value: user_data::JSON.into(),
        });
    }
    let (deploy_cost, bid_per_gpu) = if req.offer.spot {
        (
            None,
            Some(mapping::usd_float(mapping::bid_per_gpu(&req.offer)?)),
        )
    } else {
        (Some(mapping::usd_float(req.offer.price_per_hour)), None)
    };
    Ok(DeployInput {
        name: req.instance_name.clone(),
        image_name: req
            .image
            .clone()
            .filter(|i| !i.trim().is_empty())
            .unwrap_or_else(|| settings.image.clone()),
        gpu_type_id: gpu_id.into(),
        gpu_count: req.offer.count,
        cloud_type: settings.cloud()?.as_str().into(),
        data_center_id: mapping::data_center(&req.offer.region),
        container_disk_in_gb: settings.container_disk_gb,
        volume_in_gb: settings.volume_gb,
        volume_mount_path: "/workspace".into(),
        docker_args: String::new(),
        ports: settings.ports.clone(),
        support_public_ip: true,
        env,
        deploy_cost,
        bid_per_gpu,
    })
}

#[cfg(test)]
mod tests {
    use tgp_provider_sdk::{Availability, BootstrapDelivery, Offer, SealedDocument, Tag, config};

    use super::*;

    fn settings() -> Settings {
        config::from_pairs::<Settings>(Vec::new())
            .unwrap()
            .validated()
            .unwrap()
    }

    fn request(spot: bool) -> LaunchRequest {
        LaunchRequest {
            offer: Offer {
                offer_id: "NVIDIA H100 80GB HBM3|2|EU-RO-1|on-demand".into(),
                gpu_type: "H100-SXM".into(),
                count: 2,
                region: "EU-RO-1".into(),
                price_per_hour: 5_980_000,
                spot,
                availability: Availability::Available,
            },
            instance_name: "tgp-abc-1".into(),
            tags: vec![Tag::new("tgp.io/cluster", "c1")],
            user_data: Some(SealedDocument {
                size: 17,
                delivery: BootstrapDelivery::CloudInit,
            }),
            image: None,
            terminate_after_seconds: None,
        }
    }

    #[test]
    fn on_demand_input_carries_name_tags_and_ceiling() {
        let input = deploy_input(
            &settings(),
            &request(false),
            "H100-SXM",
            "NVIDIA H100 80GB HBM3",
        )
        .unwrap();
        assert_eq!(input.name, "tgp-abc-1");
        assert_eq!(input.gpu_count, 2);
        assert_eq!(input.cloud_type, "SECURE");
        assert_eq!(input.data_center_id.as_deref(), Some("EU-RO-1"));
        assert_eq!(input.deploy_cost, Some(5.98));
        assert_eq!(input.bid_per_gpu, None);
        assert_eq!(input.image_name, crate::settings::DEFAULT_IMAGE);
        let env: Vec<String> = input
            .env
            .iter()
            .map(|e| format!("{}={}", e.key, e.value))
            .collect();
        assert_eq!(
            tags::decode(tags::env_value(&env, tags::TAGS_VAR).unwrap()),
            [Tag::new("tgp.io/cluster", "c1")]
        );
        assert_eq!(
            tags::env_value(&env, tags::USER_DATA_VAR),
            Some("{{user-data:json}}"),
            "the sealed document is placed by reference; the host fills it in"
        );
    }

    #[test]
    fn spot_input_bids_per_gpu() {
        let mut req = request(true);
        req.image = Some("my/image:1".into());
        let input = deploy_input(&settings(), &req, "H100-SXM", "NVIDIA H100 80GB HBM3").unwrap();
        assert_eq!(input.bid_per_gpu, Some(2.99));
        assert_eq!(input.deploy_cost, None);
        assert_eq!(input.image_name, "my/image:1");
    }

    #[test]
    fn bad_requests_are_refused_before_any_call() {
        let mut req = request(false);
        req.instance_name = " ".into();
        assert!(
            matches!(deploy_input(&settings(), &req, "H100-SXM", "x"), Err(ProviderError::InvalidRequest(f)) if f.field == "instance-name")
        );
    }

    #[test]
    fn sending_natively_fails_cleanly() {
        let client = Client::new(settings());
        assert!(matches!(client.balance(), Err(ProviderError::Internal(_))));
        assert!(matches!(
            client.terminate("p"),
            Err(ProviderError::Internal(_))
        ));
    }
}
