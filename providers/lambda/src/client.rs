//! Lambda Cloud's endpoints, called through the host.
//!
//! Each method performs one request and returns the decoded `data` or the classified error; the
//! translation rules live in `mapping`. Lambda allows about one request per second (launch: one
//! per 12 s); the host enforces that from `info`'s rate limits, so no call here retries.

use serde::de::DeserializeOwned;
use tgp_provider_sdk::http::{self, RequestBuilder, Response};
use tgp_provider_sdk::{LaunchRequest, ProviderError, user_data};

use crate::api::{
    ApiInstance, Data, Image, InstanceTypes, LaunchBody, Launched, TerminateBody, Terminated,
};
use crate::mapping;
use crate::settings::Settings;
use crate::tags;

/// Per-request timeout.
const TIMEOUT_MS: u32 = 30_000;

/// A client for one configured Lambda account (the host authenticates its requests).
pub struct Client {
    settings: Settings,
}

/// What a request about one instance found.
pub enum Lookup<T> {
    Found(T),
    /// 404 `global/object-does-not-exist`.
    Missing,
}

impl Client {
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }

    fn request(&self, builder: fn(String) -> RequestBuilder, path: &str) -> RequestBuilder {
        builder(self.settings.url(path)).timeout(TIMEOUT_MS)
    }

    /// `GET /instance-types`.
    pub fn instance_types(&self) -> Result<InstanceTypes, ProviderError> {
        data(self.request(http::get, "/instance-types").send()?)
    }

    /// `POST /instance-operations/launch`; the new instance's id.
    pub fn launch(&self, body: &LaunchBody) -> Result<String, ProviderError> {
        let resp = self
            .request(http::post, "/instance-operations/launch")
            .json(body)
            .send()?;
        let launched: Launched = data(resp).map_err(mapping::launch_error)?;
        launched.instance_ids.into_iter().next().ok_or_else(|| {
            ProviderError::internal("Lambda answered the launch without an instance id")
        })
    }

    /// `GET /instances/{id}`.
    pub fn instance(&self, id: &str) -> Result<Lookup<ApiInstance>, ProviderError> {
        let path = format!("/instances/{}", http::encode_component(id));
        lookup(self.request(http::get, &path).send()?)
    }

    /// `POST /instance-operations/terminate` for one id.
    pub fn terminate(&self, id: &str) -> Result<Lookup<Terminated>, ProviderError> {
        let resp = self
            .request(http::post, "/instance-operations/terminate")
            .json(&TerminateBody { instance_ids: [id] })
            .send()?;
        lookup(resp)
    }

    /// `GET /instances`.
    pub fn instances(&self) -> Result<Vec<ApiInstance>, ProviderError> {
        data(self.request(http::get, "/instances").send()?)
    }
}

/// `data` of a successful answer, or the classified Lambda error.
fn data<T: DeserializeOwned>(resp: Response) -> Result<T, ProviderError> {
    if !resp.is_success() {
        return Err(mapping::api_error(
            resp.status,
            resp.retry_after_ms(),
            &resp.body,
        ));
    }
    Ok(resp.json::<Data<T>>()?.data)
}

/// Like [`data`], with a 404 as [`Lookup::Missing`].
fn lookup<T: DeserializeOwned>(resp: Response) -> Result<Lookup<T>, ProviderError> {
    match data(resp) {
        Ok(found) => Ok(Lookup::Found(found)),
        Err(ProviderError::NotFound(_)) => Ok(Lookup::Missing),
        Err(e) => Err(e),
    }
}

/// The launch body for a request: one offer's type and region, exactly one SSH key, our name
/// (and hostname when valid), the escaped ownership tags and the cloud-init user-data.
/// Everything is checked here, before any request: a missing `ssh_key_name` is refused first.
pub fn launch_body(settings: &Settings, req: &LaunchRequest) -> Result<LaunchBody, ProviderError> {
    let ssh_key = settings.require_ssh_key()?;
    if req.offer.spot {
        return Err(ProviderError::unsupported(
            "Lambda Cloud sells no spot capacity",
        ));
    }
    let (instance_type, region) = mapping::parse_offer_id(&req.offer.offer_id)?;
    if region == mapping::NO_REGION {
        return Err(ProviderError::capacity(format!(
            "{instance_type} had no region with capacity when quoted"
        )));
    }
    let name = req.instance_name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ProviderError::invalid(
            "instance-name",
            "must be 1 to 64 characters for Lambda",
        ));
    }
    if let Some(doc) = &req.user_data {
        user_data::check_size(doc, 1024 * 1024, "Lambda")?;
    }
    let image = match (&req.image, &settings.image_id, &settings.image_family) {
        (Some(image), _, _) if !image.trim().is_empty() => Some(Image::Family(image.trim().into())),
        (_, Some(id), _) => Some(Image::Id(id.clone())),
        (_, _, Some(family)) => Some(Image::Family(family.clone())),
        _ => None,
    };
    Ok(LaunchBody {
        region_name: region.into(),
        instance_type_name: instance_type.into(),
        ssh_key_names: vec![ssh_key.into()],
        name: name.into(),
        hostname: mapping::hostname(name),
        // Sealed: the host fills the document into this JSON string of the request body.
        user_data: req.user_data.as_ref().map(|_| user_data::JSON.to_string()),
        tags: tags::encode(&req.tags)?,
        image,
    })
}

#[cfg(test)]
mod tests {
    use tgp_provider_sdk::{Availability, BootstrapDelivery, Offer, SealedDocument, Tag, config};

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        config::from_pairs::<Settings>(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
        .unwrap()
        .validated()
        .unwrap()
    }

    fn request(offer_id: &str) -> LaunchRequest {
        LaunchRequest {
            offer: Offer {
                offer_id: offer_id.into(),
                gpu_type: "H100-SXM".into(),
                count: 1,
                region: "us-east-1".into(),
                price_per_hour: 3_290_000,
                spot: false,
                availability: Availability::Available,
            },
            instance_name: "tgp-abc-1".into(),
            tags: vec![Tag::new("tgp.io/cluster", "c1")],
            user_data: Some(SealedDocument {
                size: 14,
                delivery: BootstrapDelivery::CloudInit,
            }),
            image: None,
            terminate_after_seconds: None,
        }
    }

    #[test]
    fn ssh_key_is_required_first() {
        let err = launch_body(&settings(&[]), &request("garbage")).unwrap_err();
        assert!(matches!(err, ProviderError::InvalidRequest(f) if f.field == "ssh_key_name"));
    }

    #[test]
    fn builds_the_launch_body() {
        let s = settings(&[
            ("ssh_key_name", "tgp"),
            ("image_family", "lambda-stack-22-04"),
        ]);
        let body = launch_body(&s, &request("gpu_1x_h100_sxm5@us-east-1")).unwrap();
        assert_eq!(body.instance_type_name, "gpu_1x_h100_sxm5");
        assert_eq!(body.region_name, "us-east-1");
        assert_eq!(body.ssh_key_names, ["tgp"]);
        assert_eq!(body.hostname.as_deref(), Some("tgp-abc-1"));
        assert_eq!(body.tags[0].key, "tgp:dio:scluster");
        assert_eq!(body.image, Some(Image::Family("lambda-stack-22-04".into())));
        assert_eq!(
            body.user_data.as_deref(),
            Some("{{user-data:json}}"),
            "placed by reference; the host fills in the sealed document"
        );
    }

    #[test]
    fn refuses_what_lambda_would() {
        let s = settings(&[("ssh_key_name", "tgp")]);
        assert!(matches!(
            launch_body(&s, &request("gpu_1x_a100@none")),
            Err(ProviderError::Capacity(_))
        ));
        let mut spot = request("gpu_1x_a100@us-east-1");
        spot.offer.spot = true;
        assert!(matches!(
            launch_body(&s, &spot),
            Err(ProviderError::Unsupported(_))
        ));
        let mut long = request("gpu_1x_a100@us-east-1");
        long.instance_name = "n".repeat(65);
        assert!(
            matches!(launch_body(&s, &long), Err(ProviderError::InvalidRequest(f)) if f.field == "instance-name")
        );
        let mut big = request("gpu_1x_a100@us-east-1");
        big.user_data = Some(SealedDocument {
            size: 1024 * 1024 + 1,
            delivery: BootstrapDelivery::CloudInit,
        });
        assert!(
            matches!(launch_body(&s, &big), Err(ProviderError::InvalidRequest(f)) if f.field == "user-data")
        );
    }

    #[test]
    fn lookups_treat_404_as_missing() {
        let resp = |status: u16, body: &str| Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        let missing = lookup::<ApiInstance>(resp(
            404,
            r#"{"error": {"code": "global/object-does-not-exist", "message": "Specified instance does not exist."}}"#,
        ));
        assert!(matches!(missing, Ok(Lookup::Missing)));
        let found =
            lookup::<ApiInstance>(resp(200, r#"{"data": {"id": "i1", "status": "booting"}}"#))
                .unwrap();
        assert!(matches!(found, Lookup::Found(i) if i.id == "i1"));
        assert!(matches!(
            lookup::<ApiInstance>(resp(401, "{}")),
            Err(ProviderError::Auth(_))
        ));
        assert!(matches!(
            lookup::<ApiInstance>(resp(200, "nope")),
            Err(ProviderError::Internal(_))
        ));
    }
}
