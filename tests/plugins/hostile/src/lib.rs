//! A deliberately misbehaving provider plugin for the host's sandbox tests.
//!
//! It exists to prove the host's isolation guarantees end to end: the behaviour of `quote` is
//! chosen by the config key `mode` (read through the `config` import), so one component covers
//! every hostile case (a `gpu-type` of `mode:<name>` overrides it for one call) (endless loop, memory bomb, panic, forbidden HTTP, oversized responses,
//! secret exfiltration attempts) as well as a well-behaved `ok` mode that echoes its input.
//! Built with `wit-bindgen` directly, not the SDK, so the tests do not depend on the SDK.
//!
//! The hosts it declares in `info()` (`capabilities.hosts`) are exactly the comma-separated
//! entries of the config key `declare_hosts`, verbatim (none when unset). Declaring is separate
//! from calling (`target`), so a test can make it declare a host it was not granted (refused at
//! load), a malformed one, or lie: declare only its grants and call elsewhere (refused at call
//! time).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "provider-plugin",
});

use exports::tgp::provider::provider::Guest;
use tgp::provider::types::{
    Availability, Balance, BootstrapDelivery, Capabilities, GpuSpec, Instance, LaunchRequest,
    Offer, Operation, ProviderError, ProviderInfo, Tag, TerminateOutcome,
};
use tgp::provider::{config, http, log};

struct Hostile;

fn offer(id: String, spec: &GpuSpec) -> Offer {
    Offer {
        offer_id: id,
        gpu_type: spec.gpu_type.clone(),
        count: spec.count,
        region: "hostile-1".into(),
        price_per_hour: 1_000_000 * u64::from(spec.count),
        spot: spec.spot,
        availability: Availability::Available,
    }
}

fn http_error_text(err: &http::HttpError) -> String {
    match err {
        http::HttpError::Denied(m) => format!("denied: {m}"),
        http::HttpError::Timeout => "timeout".into(),
        http::HttpError::Connect(m) => format!("connect: {m}"),
        http::HttpError::TooLarge(n) => format!("too-large: {n}"),
        http::HttpError::Invalid(m) => format!("invalid: {m}"),
    }
}

fn get(target: &str, headers: Vec<http::Header>) -> Result<http::Response, http::HttpError> {
    http::send(&http::Request {
        method: "GET".into(),
        url: target.into(),
        headers,
        body: None,
        timeout_ms: Some(10_000),
    })
}

fn target() -> Result<String, ProviderError> {
    config::get("target")
        .ok_or_else(|| ProviderError::Internal("config key `target` missing".into()))
}

/// The entries of `declare_hosts`, trimmed, verbatim otherwise.
fn declared_hosts() -> Vec<String> {
    config::get("declare_hosts")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Guest for Hostile {
    fn info() -> ProviderInfo {
        ProviderInfo {
            name: "hostile".into(),
            version: "0.0.1".into(),
            supported_operations: vec![Operation::Quote],
            capabilities: Capabilities {
                spot: false,
                balance: false,
                bootstrap: vec![BootstrapDelivery::CloudInit],
                hosts: declared_hosts(),
            },
            rate_limits: vec![],
        }
    }

    fn quote(spec: GpuSpec) -> Result<Vec<Offer>, ProviderError> {
        // A gpu-type of the form `mode:<name>` overrides the configured mode for one call, so a
        // test can make a healthy plugin trap once and check that the next call still works.
        let mode = match spec.gpu_type.strip_prefix("mode:") {
            Some(m) => m.to_owned(),
            None => config::get("mode").unwrap_or_else(|| "ok".into()),
        };
        match mode.as_str() {
            "ok" => Ok(vec![offer(
                format!("{}x{}", spec.gpu_type, spec.count),
                &spec,
            )]),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "membomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let chunk = vec![0xA5u8; 1 << 20];
                    hoard.push(std::hint::black_box(chunk));
                }
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "offlist" | "big" => match get(&target()?, vec![]) {
                Ok(resp) => Ok(vec![offer(
                    format!("status {} len {}", resp.status, resp.body.len()),
                    &spec,
                )]),
                Err(e) => Err(ProviderError::Internal(http_error_text(&e))),
            },
            "secret" => {
                let headers = vec![http::Header {
                    name: "Authorization".into(),
                    value: "Bearer {{secret:api_key}}".into(),
                }];
                match get(&target()?, headers) {
                    Ok(resp) => {
                        let body = String::from_utf8_lossy(&resp.body).into_owned();
                        let seen_headers: Vec<String> = resp
                            .headers
                            .iter()
                            .map(|h| format!("{}: {}", h.name, h.value))
                            .collect();
                        log::write(
                            log::Level::Info,
                            &format!("secret mode received body: {body}"),
                        );
                        log::write(
                            log::Level::Info,
                            &format!("secret mode received headers: {}", seen_headers.join("; ")),
                        );
                        Ok(vec![offer(
                            format!("{body}\n{}", seen_headers.join("\n")),
                            &spec,
                        )])
                    }
                    Err(e) => Err(ProviderError::Internal(http_error_text(&e))),
                }
            }
            other => Err(ProviderError::Unsupported(format!("unknown mode {other}"))),
        }
    }

    fn launch(_req: LaunchRequest) -> Result<Instance, ProviderError> {
        Err(ProviderError::Unsupported("launch".into()))
    }

    fn verify(_instance_id: String) -> Result<Instance, ProviderError> {
        Err(ProviderError::Unsupported("verify".into()))
    }

    fn terminate(_instance_id: String) -> Result<TerminateOutcome, ProviderError> {
        Err(ProviderError::Unsupported("terminate".into()))
    }

    fn balance() -> Result<Balance, ProviderError> {
        Ok(Balance::Unsupported)
    }

    fn list_owned(_owner: Tag) -> Result<Vec<Instance>, ProviderError> {
        Err(ProviderError::Unsupported("list-owned".into()))
    }
}

export!(Hostile);
