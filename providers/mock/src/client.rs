//! The mock cloud's endpoints, called through the host.
//!
//! Each function performs one request and returns either the decoded answer or the error the
//! contract wants; the translation rules themselves live in `mapping`.

use std::collections::BTreeMap;

use tgp_provider_sdk::http::{self, RequestBuilder, Response};
use tgp_provider_sdk::{GpuSpec, LaunchRequest, ProviderError, Tag, user_data};

use crate::api::{
    Account, ApiInstance, ApiOffer, CreateInstance, InstanceEnvelope, InstancesPage, OffersPage,
};
use crate::mapping;
use crate::settings::Settings;

/// Per-request timeout; the mock cloud answers on loopback.
const TIMEOUT_MS: u32 = 10_000;

/// A client for one configured mock cloud (the host authenticates its requests).
pub struct Client<'s> {
    settings: &'s Settings,
}

/// What a `GET`/`DELETE` of one instance found.
pub enum Lookup<T> {
    Found(T),
    /// 404: the cloud does not know the id.
    Missing,
}

impl<'s> Client<'s> {
    pub fn new(settings: &'s Settings) -> Self {
        Self { settings }
    }

    fn request(&self, builder: fn(String) -> RequestBuilder, path: &str) -> RequestBuilder {
        // The host adds the credentials (`info` declares bearer with the configured secret).
        builder(self.settings.url(path)).timeout(TIMEOUT_MS)
    }

    /// `GET /v1/offers` with the filters the cloud understands.
    pub fn offers(&self, spec: &GpuSpec) -> Result<Vec<ApiOffer>, ProviderError> {
        let req = self
            .request(http::get, "/v1/offers")
            .query("gpu_type", &spec.gpu_type)
            .query("count", spec.count.to_string())
            .query("spot", if spec.spot { "true" } else { "false" });
        Ok(expect_ok(req.send()?)?.json::<OffersPage>()?.offers)
    }

    /// `POST /v1/instances`.
    pub fn create_instance(&self, req: &LaunchRequest) -> Result<ApiInstance, ProviderError> {
        let body = CreateInstance {
            offer_id: &req.offer.offer_id,
            name: &req.instance_name,
            tags: req
                .tags
                .iter()
                .map(|t| (t.key.as_str(), t.value.as_str()))
                .collect::<BTreeMap<_, _>>(),
            // Sealed: the host fills the document into the JSON string.
            user_data: req.user_data.as_ref().map(|_| user_data::JSON),
            image: req.image.as_deref(),
        };
        let resp = self
            .request(http::post, "/v1/instances")
            .json(&body)
            .send()?;
        Ok(expect_ok(resp)?.json::<InstanceEnvelope>()?.instance)
    }

    /// `GET /v1/instances/{id}`.
    pub fn instance(&self, id: &str) -> Result<Lookup<ApiInstance>, ProviderError> {
        let resp = self.request(http::get, &instance_path(id)).send()?;
        found(resp)
    }

    /// `DELETE /v1/instances/{id}`.
    pub fn delete_instance(&self, id: &str) -> Result<Lookup<ApiInstance>, ProviderError> {
        let resp = self.request(http::delete, &instance_path(id)).send()?;
        found(resp)
    }

    /// `GET /v1/instances?tag=KEY=VALUE`.
    pub fn instances_tagged(&self, tag: &Tag) -> Result<Vec<ApiInstance>, ProviderError> {
        let req = self
            .request(http::get, "/v1/instances")
            .query("tag", format!("{}={}", tag.key, tag.value));
        Ok(expect_ok(req.send()?)?.json::<InstancesPage>()?.instances)
    }

    /// `GET /v1/account`.
    pub fn account(&self) -> Result<Account, ProviderError> {
        let resp = self.request(http::get, "/v1/account").send()?;
        Ok(expect_ok(resp)?.json::<Account>()?)
    }
}

/// The path of one instance; the id is percent-encoded so that it stays one path segment.
fn instance_path(id: &str) -> String {
    format!("/v1/instances/{}", http::encode_component(id))
}

/// The response if it is a success, otherwise the classified mock-cloud error.
fn expect_ok(resp: Response) -> Result<Response, ProviderError> {
    if resp.is_success() {
        Ok(resp)
    } else {
        Err(mapping::api_error(
            resp.status,
            resp.retry_after_ms(),
            &resp.body,
        ))
    }
}

/// Decodes `{"instance": ...}`, with 404 as [`Lookup::Missing`].
fn found(resp: Response) -> Result<Lookup<ApiInstance>, ProviderError> {
    if resp.status == 404 {
        return Ok(Lookup::Missing);
    }
    Ok(Lookup::Found(
        expect_ok(resp)?.json::<InstanceEnvelope>()?.instance,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Retry-After".into(), "4".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn instance_ids_stay_one_path_segment() {
        assert_eq!(instance_path("i-000001"), "/v1/instances/i-000001");
        assert_eq!(instance_path("../account"), "/v1/instances/..%2Faccount");
    }

    #[test]
    fn lookups_treat_404_as_missing() {
        assert!(matches!(found(response(404, "{}")), Ok(Lookup::Missing)));
        let ok = found(response(
            200,
            r#"{"instance": {"id": "i-1", "name": "n", "status": "running"}}"#,
        ))
        .unwrap();
        assert!(matches!(ok, Lookup::Found(i) if i.id == "i-1"));
        assert!(matches!(
            found(response(429, "")),
            Err(ProviderError::RateLimited(Some(4000)))
        ));
        assert!(matches!(
            found(response(200, "not json")),
            Err(ProviderError::Internal(_))
        ));
    }

    #[test]
    fn sending_natively_fails_cleanly() {
        let settings = Settings {
            base_url: "http://127.0.0.1:9".into(),
            api_key_secret: "api_key".into(),
        };
        let client = Client::new(&settings);
        assert!(matches!(client.account(), Err(ProviderError::Internal(_))));
    }
}
