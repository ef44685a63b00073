//! Vast.ai's endpoints, called through the host.
//!
//! Each method performs one request (launch: two when Vast leaves an instance behind an error)
//! and returns the decoded answer or the classified error; the translation rules live in
//! `mapping`.

use serde_json::{Map, Value};
use tgp_provider_sdk::http::{self, RequestBuilder, Response};
use tgp_provider_sdk::{LaunchRequest, ProviderError, error, user_data, warn};

use crate::api::{
    CreateAnswer, CreateBody, Instances, Offers, OneInstance, User, VastInstance, VastOffer,
};
use crate::mapping;
use crate::settings::Settings;
use crate::tags;

/// Per-request timeout.
const TIMEOUT_MS: u32 = 30_000;
/// Vast limits `onstart`, `args` and `args_str` together to this many characters.
const MAX_ONSTART: usize = 4096;

/// Attempts to destroy a leftover of a failed create (see `Client::destroy_leftover`).
const LEFTOVER_DESTROY_ATTEMPTS: u32 = 3;
/// Wait between those attempts: a little over Vast's 3 s destroy interval.
const LEFTOVER_DESTROY_WAIT: std::time::Duration = std::time::Duration::from_millis(3_200);

/// A client for one configured Vast account.
pub struct Client {
    settings: Settings,
}

/// What a request about one instance found.
pub enum Lookup<T> {
    Found(T),
    /// Vast does not know the id.
    Missing,
}

/// How a create answer reads.
#[derive(Debug, PartialEq)]
pub enum CreateOutcome {
    Created(u64),
    /// An error; `leftover` is an instance Vast created anyway (the low-bid quirk).
    Failed {
        error: ProviderError,
        leftover: Option<u64>,
    },
}

impl Client {
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(&self, builder: fn(String) -> RequestBuilder, path: &str) -> RequestBuilder {
        // The host adds the credentials (`info` declares bearer with the configured secret).
        builder(self.settings.url(path)).timeout(TIMEOUT_MS)
    }

    /// `POST /bundles/` with a search body.
    pub fn search(&self, body: &Value) -> Result<Vec<VastOffer>, ProviderError> {
        let resp = self.request(http::post, "/bundles/").json(body).send()?;
        Ok(expect_ok(resp)?.json::<Offers>()?.offers)
    }

    /// `PUT /asks/{ask}/`. When Vast answers an error but still created an instance
    /// (`new_contract` in the error body: a bid under the minimum), that instance is destroyed
    /// at once and the error returned, so nothing is left behind.
    pub fn create(&self, ask: u64, body: &CreateBody) -> Result<u64, ProviderError> {
        let resp = self
            .request(http::put, &format!("/asks/{ask}/"))
            .json(body)
            .send()?;
        match create_outcome(&resp) {
            CreateOutcome::Created(id) => Ok(id),
            CreateOutcome::Failed {
                error,
                leftover: None,
            } => Err(error),
            CreateOutcome::Failed {
                error: failure,
                leftover: Some(id),
            } => {
                warn!("Vast refused ask {ask} but created instance {id}: destroying it now");
                if let Err(e) = self.destroy_leftover(id) {
                    error!(
                        "could not destroy instance {id} left by a failed create ({}); it is labelled as ours and reported as stopped, so garbage collection terminates it",
                        e.kind()
                    );
                }
                Err(failure)
            }
        }
    }

    /// `GET /instances/{id}/`.
    pub fn instance(&self, id: u64) -> Result<Lookup<VastInstance>, ProviderError> {
        let resp = self
            .request(http::get, &format!("/instances/{id}/"))
            .send()?;
        match lookup(resp)? {
            Lookup::Found(resp) => Ok(match resp.json::<OneInstance>()?.instances {
                Some(instance) => Lookup::Found(instance),
                None => Lookup::Missing,
            }),
            Lookup::Missing => Ok(Lookup::Missing),
        }
    }

    /// Destroys an instance a failed create left behind, retrying while Vast's destroy endpoint
    /// answers 429 (its minimum interval between destroys is 3 s and it sends no Retry-After):
    /// up to [`LEFTOVER_DESTROY_ATTEMPTS`] attempts, [`LEFTOVER_DESTROY_WAIT`] apart, well
    /// within a call's budget. Any other error ends the attempts at once.
    fn destroy_leftover(&self, id: u64) -> Result<(), ProviderError> {
        let mut attempt = 1;
        loop {
            match self.destroy(id) {
                Ok(_) => return Ok(()),
                Err(ProviderError::RateLimited(after)) if attempt < LEFTOVER_DESTROY_ATTEMPTS => {
                    let wait =
                        after.map_or(LEFTOVER_DESTROY_WAIT, std::time::Duration::from_millis);
                    warn!("destroying leftover {id}: rate limited; retrying in {wait:?}");
                    std::thread::sleep(wait.min(LEFTOVER_DESTROY_WAIT * 2));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `DELETE /instances/{id}/`.
    pub fn destroy(&self, id: u64) -> Result<Lookup<()>, ProviderError> {
        let resp = self
            .request(http::delete, &format!("/instances/{id}/"))
            .send()?;
        Ok(match lookup(resp)? {
            Lookup::Found(_) => Lookup::Found(()),
            Lookup::Missing => Lookup::Missing,
        })
    }

    /// `GET /instances/?owner=me`.
    pub fn instances(&self) -> Result<Vec<VastInstance>, ProviderError> {
        let resp = self
            .request(http::get, "/instances/")
            .query("owner", "me")
            .send()?;
        Ok(expect_ok(resp)?.json::<Instances>()?.instances)
    }

    /// `GET /users/current/`.
    pub fn user(&self) -> Result<User, ProviderError> {
        let resp = self.request(http::get, "/users/current/").send()?;
        Ok(expect_ok(resp)?.json::<User>()?)
    }
}

/// The response if it is a success, otherwise the classified Vast error.
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

/// Like [`expect_ok`], with "not found" (404, `not_found`/`no_such_instance`) as missing.
fn lookup(resp: Response) -> Result<Lookup<Response>, ProviderError> {
    match expect_ok(resp) {
        Ok(resp) => Ok(Lookup::Found(resp)),
        Err(ProviderError::NotFound(_)) => Ok(Lookup::Missing),
        Err(e) => Err(e),
    }
}

/// Reads a create answer: success needs a 2xx, no `success: false` and a `new_contract`; any
/// error keeps the `new_contract` it may carry.
pub fn create_outcome(resp: &Response) -> CreateOutcome {
    let answer = serde_json::from_slice::<CreateAnswer>(&resp.body).unwrap_or_default();
    let contract = answer.contract();
    if resp.is_success() && answer.success != Some(false) {
        return match contract {
            Some(id) => CreateOutcome::Created(id),
            None => CreateOutcome::Failed {
                error: ProviderError::internal("Vast accepted the create without a new_contract"),
                leftover: None,
            },
        };
    }
    let error = if resp.is_success() {
        // `success: false` with a 2xx status: classify the body as a 400 would be.
        mapping::api_error(400, None, &resp.body)
    } else {
        mapping::api_error(resp.status, resp.retry_after_ms(), &resp.body)
    };
    CreateOutcome::Failed {
        error,
        leftover: contract,
    }
}

/// The create body for a launch: image, our label (name and tags), disk, the bootstrap document
/// as `onstart`, and the bid for spot offers.
pub fn create_body(
    settings: &Settings,
    req: &LaunchRequest,
    bid: Option<u64>,
) -> Result<CreateBody, ProviderError> {
    if req.instance_name.trim().is_empty() {
        return Err(ProviderError::invalid("instance-name", "must not be empty"));
    }
    if let Some(doc) = &req.user_data {
        // Bytes bound characters from above: a document within the limit in bytes is within
        // it in characters.
        user_data::check_size(doc, MAX_ONSTART as u64, "Vast's onstart script")?;
    }
    let price = match (req.offer.spot, bid) {
        (false, _) => None,
        (true, Some(bid)) => Some(bid as f64 / 1_000_000.0),
        (true, None) => {
            return Err(ProviderError::invalid(
                "offer.offer-id",
                "a spot offer must carry its bid",
            ));
        }
    };
    Ok(CreateBody {
        image: req
            .image
            .clone()
            .filter(|i| !i.trim().is_empty())
            .unwrap_or_else(|| settings.image.clone()),
        label: tags::encode_label(req.instance_name.trim(), &req.tags)?,
        disk: settings.disk_gb,
        runtype: "ssh",
        // Sealed: the host fills the document into this JSON string of the request body.
        onstart: req.user_data.as_ref().map(|_| user_data::JSON.to_string()),
        env: Map::new(),
        price,
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
                offer_id: "7".into(),
                gpu_type: "RTX4090".into(),
                count: 1,
                region: "CA".into(),
                price_per_hour: 350_000,
                spot,
                availability: Availability::Available,
            },
            instance_name: "tgp-a-1".into(),
            tags: vec![Tag::new("tgp.io/cluster", "c1")],
            user_data: Some(SealedDocument {
                size: 7,
                delivery: BootstrapDelivery::CloudInit,
            }),
            image: None,
            terminate_after_seconds: None,
        }
    }

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn create_answers() {
        assert_eq!(
            create_outcome(&resp(200, r#"{"success": true, "new_contract": 1234568}"#)),
            CreateOutcome::Created(1234568)
        );
        let quirk = create_outcome(&resp(
            400,
            r#"{"success": false, "error": "insufficient_bid", "msg": "bid too low", "new_contract": 99, "ask_id": 7}"#,
        ));
        assert!(matches!(
            quirk,
            CreateOutcome::Failed {
                error: ProviderError::Capacity(_),
                leftover: Some(99)
            }
        ));
        let quirk_200 = create_outcome(&resp(
            200,
            r#"{"success": false, "error": "insufficient_bid", "msg": "x", "new_contract": 5}"#,
        ));
        assert!(matches!(
            quirk_200,
            CreateOutcome::Failed {
                leftover: Some(5),
                ..
            }
        ));
        assert!(matches!(
            create_outcome(&resp(
                410,
                r#"{"success": false, "error": "no_such_ask", "msg": "gone"}"#
            )),
            CreateOutcome::Failed {
                error: ProviderError::Capacity(_),
                leftover: None
            }
        ));
        assert!(matches!(
            create_outcome(&resp(
                429,
                r#"{"detail": "API requests too frequent endpoint threshold=4.5"}"#
            )),
            CreateOutcome::Failed {
                error: ProviderError::RateLimited(None),
                leftover: None
            }
        ));
        assert!(matches!(
            create_outcome(&resp(200, r#"{"success": true}"#)),
            CreateOutcome::Failed {
                error: ProviderError::Internal(_),
                leftover: None
            }
        ));
    }

    #[test]
    fn create_bodies() {
        let od = create_body(&settings(), &request(false), None).unwrap();
        assert_eq!(od.price, None);
        assert_eq!(od.image, crate::settings::DEFAULT_IMAGE);
        assert_eq!(od.onstart.as_deref(), Some("{{user-data:json}}"));
        assert_eq!(
            tags::decode_label(&od.label),
            Some(("tgp-a-1".into(), vec![Tag::new("tgp.io/cluster", "c1")]))
        );
        let v = serde_json::to_value(&od).unwrap();
        assert!(v.get("price").is_none());
        let spot = create_body(&settings(), &request(true), Some(220_000)).unwrap();
        assert_eq!(spot.price, Some(0.22));
        assert!(create_body(&settings(), &request(true), None).is_err());
        let mut long = request(false);
        long.user_data = Some(SealedDocument {
            size: 4097,
            delivery: BootstrapDelivery::CloudInit,
        });
        assert!(
            matches!(create_body(&settings(), &long, None), Err(ProviderError::InvalidRequest(f)) if f.field == "user-data")
        );
    }

    #[test]
    fn lookups_treat_not_found_as_missing() {
        assert!(matches!(
            lookup(resp(
                404,
                r#"{"success":false,"error":"not_found","msg":"Instance not found"}"#
            )),
            Ok(Lookup::Missing)
        ));
        assert!(matches!(
            lookup(resp(
                404,
                r#"{"success":false,"error":"no_such_instance","msg":"x"}"#
            )),
            Ok(Lookup::Missing)
        ));
        assert!(matches!(
            lookup(resp(
                401,
                r#"{"success":false,"error":"auth_error","msg":"Invalid user key"}"#
            )),
            Err(ProviderError::Auth(_))
        ));
    }
}
