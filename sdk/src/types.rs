//! The contract's data types, re-exported from the generated bindings, with constructors.
//!
//! The types are exactly the WIT records and variants (so nothing is converted on the way in
//! or out); this module adds the small conveniences that make provider code read well, e.g.
//! `ProviderError::invalid("gpu-type", "unknown GPU")` or `Tag::new("tgp.io/cluster", "c1")`.

pub use crate::__bindings::tgp::provider::types::{
    Availability, Balance, BalanceAmount, BootstrapDelivery, Capabilities, GpuSpec, Instance,
    InstanceState, InvalidField, LaunchRequest, MicroUsd, Offer, Operation, ProviderError,
    ProviderInfo, RateLimit, Tag, TerminateOutcome,
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

    /// Adds a rate limit the host should respect for this provider.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limits.push(limit);
        self
    }
}

impl Default for Capabilities {
    /// No spot, no balance, no bootstrap delivery, no hosts.
    fn default() -> Self {
        Self {
            spot: false,
            balance: false,
            bootstrap: Vec::new(),
            hosts: Vec::new(),
        }
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
        }
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
        }
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
    fn instance_tags_match_key_and_value() {
        let mut i = Instance::new("i-1", "n", InstanceState::Running);
        i.tags.push(Tag::new("owner", "a"));
        assert!(i.has_tag(&Tag::new("owner", "a")));
        assert!(!i.has_tag(&Tag::new("owner", "b")));
    }
}
