//! The contract's data types, re-exported from the generated bindings, with constructors.
//!
//! The types are exactly the WIT records and variants (so nothing is converted on the way in
//! or out); this module adds the small conveniences that make provider code read well, e.g.
//! `ProviderError::invalid("gpu-type", "unknown GPU")` or `Tag::new("tgp.io/cluster", "c1")`.

pub use crate::__bindings::tgp::provider::types::{
    AuthScheme, Availability, Balance, BalanceAmount, BasicAuth, BootstrapDelivery, Capabilities,
    ClientAuth, GpuSpec, Instance, InstanceState, InvalidField, LaunchRequest, MicroUsd,
    NamedCredential, Oauth2ClientCredentials, Offer, Operation, ProviderError, ProviderInfo,
    QuoteResult, RateLimit, SealedDocument, Tag, TerminateOutcome,
};

impl ProviderError {
    /// Credentials missing, wrong or revoked.
    pub fn auth(message: impl Into<String>) -> Self {
        Self::Auth(message.into())
    }
    /// The account cannot pay.
    pub fn billing(message: impl Into<String>) -> Self {
        Self::Billing(message.into())
    }
    /// No capacity for the offer right now.
    pub fn capacity(message: impl Into<String>) -> Self {
        Self::Capacity(message.into())
    }
    /// An account quota or limit was reached.
    pub fn quota(message: impl Into<String>) -> Self {
        Self::Quota(message.into())
    }
    /// Slow down; retry after `retry_after_ms` if the provider said.
    pub fn rate_limited(retry_after_ms: Option<u64>) -> Self {
        Self::RateLimited(retry_after_ms)
    }
    /// The request is wrong; `field` names the culprit.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidRequest(InvalidField {
            field: field.into(),
            reason: reason.into(),
        })
    }
    /// The object does not exist.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }
    /// A temporary failure worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient(message.into())
    }
    /// The operation or option is not supported.
    pub fn unsupported(what: impl Into<String>) -> Self {
        Self::Unsupported(what.into())
    }
    /// A bug or an unexpected answer.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// The contract's name for the error's kind, e.g. `"rate-limited"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Auth(_) => "auth",
            Self::Billing(_) => "billing",
            Self::Capacity(_) => "capacity",
            Self::Quota(_) => "quota",
            Self::RateLimited(_) => "rate-limited",
            Self::InvalidRequest(_) => "invalid-request",
            Self::NotFound(_) => "not-found",
            Self::Transient(_) => "transient",
            Self::Unsupported(_) => "unsupported",
            Self::Internal(_) => "internal",
        }
    }
}

impl Operation {
    /// Every operation of the contract, in WIT order.
    pub const ALL: [Operation; 6] = [
        Operation::Quote,
        Operation::Launch,
        Operation::Verify,
        Operation::Terminate,
        Operation::Balance,
        Operation::ListOwned,
    ];

    /// The contract's name, e.g. `"list-owned"`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Quote => "quote",
            Operation::Launch => "launch",
            Operation::Verify => "verify",
            Operation::Terminate => "terminate",
            Operation::Balance => "balance",
            Operation::ListOwned => "list-owned",
        }
    }
}

impl ProviderInfo {
    /// Info with no operations, no capabilities and no rate limits; fill in the rest with the
    /// builder methods or the public fields.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            supported_operations: Vec::new(),
            capabilities: Capabilities::default(),
            rate_limits: Vec::new(),
        }
    }

    /// Declares the operations this provider implements.
    pub fn supports(mut self, operations: &[Operation]) -> Self {
        for op in operations {
            if !self.supported_operations.contains(op) {
                self.supported_operations.push(*op);
            }
        }
        self
    }

    /// Declares the capabilities. This replaces the whole record, `hosts` included: call
    /// [`ProviderInfo::hosts`] after it, or fill `hosts` in the record.
    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Declares origins (`scheme://host[:port]`) this provider will call, given its
    /// configuration: `capabilities.hosts`. Usually the origin of the `base_url` setting, from
    /// [`crate::config::base_url_hosts`]. The engine refuses to load a plugin declaring an
    /// origin the operator did not grant, so declare every host the plugin calls, and only
    /// those. Duplicates are dropped.
    pub fn hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for host in hosts {
            let host = host.into();
            if !self.capabilities.hosts.contains(&host) {
                self.capabilities.hosts.push(host);
            }
        }
        self
    }

    /// Adds a rate limit the host should respect for this provider. The host queues calls
    /// until they fit the limit (for every caller), so the provider never sleeps or retries to
    /// respect it.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limits.push(limit);
        self
    }

    /// Declares how the vendor's API authenticates (`capabilities.auth`): the host applies it to
    /// every request bound for the provider's hosts, with the secret values the operator
    /// configured, and the plugin never sees them. The operator may configure another scheme,
    /// which wins. Call it after [`ProviderInfo::capabilities`] (which replaces the record).
    pub fn auth(mut self, scheme: AuthScheme) -> Self {
        self.capabilities.auth = Some(scheme);
        self
    }
}

impl Default for Capabilities {
    /// No spot, no balance, no bootstrap delivery, no hosts, no credentials, no self-terminate.
    fn default() -> Self {
        Self {
            spot: false,
            balance: false,
            bootstrap: Vec::new(),
            hosts: Vec::new(),
            auth: None,
            self_terminate: false,
        }
    }
}

impl AuthScheme {
    /// `Authorization: Bearer <value of secret>`: the most common API-key scheme.
    pub fn bearer(secret: impl Into<String>) -> Self {
        Self::Bearer(secret.into())
    }

    /// HTTP Basic with the user name from `username_secret` and the password from
    /// `password_secret` (empty when `None`).
    pub fn basic(username_secret: impl Into<String>, password_secret: Option<&str>) -> Self {
        Self::Basic(BasicAuth {
            username_secret: username_secret.into(),
            password_secret: password_secret.map(str::to_owned),
        })
    }

    /// The value of `secret` in header `name` (e.g. `X-API-Key`), after `prefix`.
    pub fn header(name: impl Into<String>, secret: impl Into<String>, prefix: &str) -> Self {
        Self::Header(NamedCredential {
            name: name.into(),
            secret: secret.into(),
            prefix: prefix.to_owned(),
        })
    }

    /// The value of `secret` in query parameter `name` (e.g. `api_key`).
    pub fn query(name: impl Into<String>, secret: impl Into<String>) -> Self {
        Self::Query(NamedCredential {
            name: name.into(),
            secret: secret.into(),
            prefix: String::new(),
        })
    }

    /// OAuth2 client credentials: the host fetches a token from `token_url` with the client id
    /// and secret held in the named secrets (sent in the form body), caches it until it
    /// expires, and sends it as a bearer token.
    pub fn oauth2(
        token_url: impl Into<String>,
        client_id_secret: impl Into<String>,
        client_secret_secret: impl Into<String>,
    ) -> Self {
        Self::Oauth2(Oauth2ClientCredentials {
            token_url: token_url.into(),
            client_id_secret: client_id_secret.into(),
            client_secret_secret: client_secret_secret.into(),
            scopes: Vec::new(),
            client_auth: ClientAuth::Body,
        })
    }
}

impl QuoteResult {
    /// The offers found, with no unrecognised vendor names.
    pub fn new(offers: Vec<Offer>) -> Self {
        Self {
            offers,
            unrecognized: Vec::new(),
        }
    }

    /// Reports vendor GPU or instance-type names seen in the listing that no canonical GPU
    /// (nor an alias in the spec) matches; duplicates are dropped. The engine counts them in
    /// the provider's status so an operator can add them to the catalogue.
    pub fn unrecognized<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for name in names {
            let name = name.into();
            if !self.unrecognized.contains(&name) {
                self.unrecognized.push(name);
            }
        }
        self
    }
}

impl From<Vec<Offer>> for QuoteResult {
    fn from(offers: Vec<Offer>) -> Self {
        Self::new(offers)
    }
}

impl RateLimit {
    /// `requests` calls per `per_seconds`, for every operation.
    pub fn new(requests: u32, per_seconds: u32) -> Self {
        Self {
            operation: None,
            requests,
            per_seconds,
        }
    }

    /// Restricts the limit to one operation.
    pub fn for_operation(mut self, operation: Operation) -> Self {
        self.operation = Some(operation);
        self
    }
}

impl GpuSpec {
    /// `count` GPUs of `gpu_type`, any region, on-demand, no price cap.
    pub fn new(gpu_type: impl Into<String>, count: u32) -> Self {
        Self {
            gpu_type: gpu_type.into(),
            count,
            regions: Vec::new(),
            spot: false,
            max_price_per_hour: None,
            aliases: Vec::new(),
        }
    }

    /// Whether the vendor's name `vendor_name` is one of the spec's aliases (the operator's
    /// catalogue names for this GPU), compared case-insensitively and ignoring surrounding
    /// spaces. Use it besides the plugin's own mapping, so operators can teach the plugin a new
    /// vendor name without a rebuild.
    pub fn is_alias(&self, vendor_name: &str) -> bool {
        let name = vendor_name.trim();
        self.aliases
            .iter()
            .any(|a| a.trim().eq_ignore_ascii_case(name))
    }

    /// Whether `region` is acceptable (an empty region list accepts every region).
    pub fn accepts_region(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|r| r == region)
    }

    /// Whether `price_per_hour` is within the spec's cap (no cap accepts every price).
    pub fn accepts_price(&self, price_per_hour: MicroUsd) -> bool {
        self.max_price_per_hour
            .is_none_or(|max| price_per_hour <= max)
    }
}

impl Tag {
    /// A `key`=`value` tag.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl Instance {
    /// An instance with only its id, name and state known.
    pub fn new(
        instance_id: impl Into<String>,
        name: impl Into<String>,
        state: InstanceState,
    ) -> Self {
        Self {
            instance_id: instance_id.into(),
            name: name.into(),
            state,
            public_ip: None,
            region: None,
            gpu_type: None,
            price_per_hour: None,
            tags: Vec::new(),
            vendor_state: None,
        }
    }

    /// Records the vendor's own word for the state (`vendor-state`), for status and diagnosis.
    pub fn with_vendor_state(mut self, vendor_state: impl Into<String>) -> Self {
        self.vendor_state = Some(vendor_state.into());
        self
    }

    /// Whether the instance carries `tag` (same key and value).
    pub fn has_tag(&self, tag: &Tag) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

impl Balance {
    /// A known balance, with the spend rate if the provider reports it.
    pub fn amount(available: MicroUsd, spend_per_hour: Option<MicroUsd>) -> Self {
        Self::Amount(BalanceAmount {
            available,
            spend_per_hour,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_the_field() {
        let err = ProviderError::invalid("gpu-type", "unknown GPU");
        assert_eq!(
            err,
            ProviderError::InvalidRequest(InvalidField {
                field: "gpu-type".into(),
                reason: "unknown GPU".into()
            })
        );
        assert_eq!(err.kind(), "invalid-request");
    }

    #[test]
    fn info_builder_deduplicates_operations() {
        let info = ProviderInfo::new("x", "1.0.0")
            .supports(&[Operation::Quote, Operation::Quote, Operation::Launch])
            .rate_limit(RateLimit::new(10, 1).for_operation(Operation::Quote));
        assert_eq!(
            info.supported_operations,
            vec![Operation::Quote, Operation::Launch]
        );
        assert_eq!(info.rate_limits[0].operation, Some(Operation::Quote));
        assert_eq!(info.capabilities, Capabilities::default());
    }

    #[test]
    fn hosts_are_declared_once_and_survive_later_builder_calls() {
        let info = ProviderInfo::new("x", "1.0.0")
            .capabilities(Capabilities {
                spot: true,
                ..Capabilities::default()
            })
            .hosts(["https://api.example.com"])
            .hosts(vec![
                "https://api.example.com".to_string(),
                "http://127.0.0.1:9".to_string(),
            ])
            .supports(&[Operation::Quote]);
        assert_eq!(
            info.capabilities.hosts,
            ["https://api.example.com", "http://127.0.0.1:9"]
        );
        assert!(info.capabilities.spot);
        assert!(ProviderInfo::new("y", "1").capabilities.hosts.is_empty());
    }

    #[test]
    fn all_operations_have_contract_names() {
        let names: Vec<_> = Operation::ALL.iter().map(|op| op.name()).collect();
        assert_eq!(
            names,
            [
                "quote",
                "launch",
                "verify",
                "terminate",
                "balance",
                "list-owned"
            ]
        );
    }

    #[test]
    fn spec_filters_regions_and_price() {
        let mut spec = GpuSpec::new("H100-SXM", 1);
        assert!(spec.accepts_region("anywhere"));
        assert!(spec.accepts_price(u64::MAX));
        spec.regions = vec!["us-east-1".into()];
        spec.max_price_per_hour = Some(2_000_000);
        assert!(spec.accepts_region("us-east-1"));
        assert!(!spec.accepts_region("eu-west-1"));
        assert!(spec.accepts_price(2_000_000));
        assert!(!spec.accepts_price(2_000_001));
    }

    #[test]
    fn aliases_match_case_insensitively() {
        let mut spec = GpuSpec::new("B200", 1);
        assert!(!spec.is_alias("NVIDIA B200"));
        spec.aliases = vec!["NVIDIA B200".into(), " b200 sxm ".into()];
        assert!(spec.is_alias("nvidia b200"));
        assert!(spec.is_alias("B200 SXM"));
        assert!(!spec.is_alias("B200 PCIe"));
    }

    #[test]
    fn quote_results_deduplicate_unrecognized_names() {
        let r = QuoteResult::new(Vec::new()).unrecognized(["gpu_1x_gh200", "gpu_1x_gh200", "x"]);
        assert_eq!(r.unrecognized, ["gpu_1x_gh200", "x"]);
        let from: QuoteResult = Vec::<Offer>::new().into();
        assert!(from.offers.is_empty() && from.unrecognized.is_empty());
    }

    #[test]
    fn auth_schemes_name_their_secrets() {
        assert_eq!(
            AuthScheme::bearer("api_key"),
            AuthScheme::Bearer("api_key".into())
        );
        let info = ProviderInfo::new("x", "1").auth(AuthScheme::query("api_key", "k"));
        assert!(matches!(
            info.capabilities.auth,
            Some(AuthScheme::Query(NamedCredential { ref name, ref secret, .. })) if name == "api_key" && secret == "k"
        ));
        assert!(matches!(
            AuthScheme::oauth2("https://a/token", "id", "secret"),
            AuthScheme::Oauth2(Oauth2ClientCredentials {
                client_auth: ClientAuth::Body,
                ..
            })
        ));
    }

    #[test]
    fn instance_tags_match_key_and_value() {
        let mut i = Instance::new("i-1", "n", InstanceState::Running);
        i.tags.push(Tag::new("owner", "a"));
        assert!(i.has_tag(&Tag::new("owner", "a")));
        assert!(!i.has_tag(&Tag::new("owner", "b")));
    }
}
