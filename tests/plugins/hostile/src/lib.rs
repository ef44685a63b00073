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
    AuthScheme, Availability, Balance, BootstrapDelivery, Capabilities, GpuSpec, Instance,
    InstanceState, LaunchRequest, Offer, Operation, ProviderError, ProviderInfo, QuoteResult, Tag,
    TerminateOutcome,
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
        http::HttpError::Unauthenticated(m) => format!("unauthenticated: {m}"),
    }
}

/// The auth scheme to declare: config key `auth` = `bearer` (secret `api_key`), `query`
/// (parameter `api_key` from secret `api_key`), or unset for none.
fn declared_auth() -> Option<AuthScheme> {
    match config::get("auth").as_deref() {
        Some("bearer") => Some(AuthScheme::Bearer("api_key".into())),
        Some("query") => Some(AuthScheme::Query(tgp::provider::types::NamedCredential {
            name: "api_key".into(),
            secret: "api_key".into(),
            prefix: String::new(),
        })),
        _ => None,
    }
}

fn send(
    method: &str,
    url: &str,
    headers: Vec<http::Header>,
    body: Option<Vec<u8>>,
) -> Result<http::Response, http::HttpError> {
    http::send(&http::Request {
        method: method.into(),
        url: url.into(),
        headers,
        body,
        timeout_ms: Some(10_000),
    })
}

/// Everything a response shows the plugin, as text.
fn seen(resp: &http::Response) -> String {
    let headers: Vec<String> = resp
        .headers
        .iter()
        .map(|h| format!("{}: {}", h.name, h.value))
        .collect();
    format!(
        "status {}\n{}\n{}",
        resp.status,
        headers.join("\n"),
        String::from_utf8_lossy(&resp.body)
    )
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
                auth: declared_auth(),
                self_terminate: false,
            },
            rate_limits: vec![],
        }
    }

    fn quote(spec: GpuSpec) -> Result<QuoteResult, ProviderError> {
        Self::offers(spec).map(|offers| QuoteResult {
            offers,
            unrecognized: vec![],
        })
    }

    /// `launch` tries to see the sealed bootstrap document: it places it (JSON-escaped) in the
    /// body of a POST to `target`, which echoes the request back, also tries to place it in the
    /// URL and in a header, and answers an instance whose `vendor-state` is everything it saw
    /// (the request it got, the echoed response, the errors), so a test can check that no
    /// secret of the document is in it.
    fn launch(req: LaunchRequest) -> Result<Instance, ProviderError> {
        let target = target()?;
        let mut seen_text = format!("request: {req:?}\n");
        let body = format!(
            "{{\"name\":\"{}\",\"user_data\":\"{{{{user-data:json}}}}\",\"b64\":\"{{{{user-data:base64}}}}\"}}",
            req.instance_name
        );
        match send("POST", &target, vec![], Some(body.into_bytes())) {
            Ok(resp) => seen_text.push_str(&format!("echo: {}\n", seen(&resp))),
            Err(e) => seen_text.push_str(&format!("echo error: {}\n", http_error_text(&e))),
        }
        let in_url = format!("{target}?ud={{{{user-data}}}}");
        match send("GET", &in_url, vec![], None) {
            Ok(resp) => seen_text.push_str(&format!("url: {}\n", seen(&resp))),
            Err(e) => seen_text.push_str(&format!("url error: {}\n", http_error_text(&e))),
        }
        let header = vec![http::Header {
            name: "x-user-data".into(),
            value: "{{user-data}}".into(),
        }];
        match send("GET", &target, header, None) {
            Ok(resp) => seen_text.push_str(&format!("header: {}\n", seen(&resp))),
            Err(e) => seen_text.push_str(&format!("header error: {}\n", http_error_text(&e))),
        }
        log::write(
            log::Level::Info,
            &format!("hostile launch saw: {seen_text}"),
        );
        Ok(Instance {
            instance_id: "hostile-1".into(),
            name: req.instance_name,
            state: InstanceState::Pending,
            public_ip: None,
            region: None,
            gpu_type: None,
            price_per_hour: None,
            tags: req.tags,
            vendor_state: Some(seen_text),
        })
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

impl Hostile {
    fn offers(spec: GpuSpec) -> Result<Vec<Offer>, ProviderError> {
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
            // Asks the target (an echo server) for whatever it received: the host applied the
            // declared credentials to the request, so an echo would carry them back.
            "secret" => match get(&target()?, vec![]) {
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
            },
            // Tries to set the header the host's credentials go in.
            "setauth" => {
                let headers = vec![http::Header {
                    name: "Authorization".into(),
                    value: "Bearer chosen-by-the-plugin".into(),
                }];
                match get(&target()?, headers) {
                    Ok(resp) => Ok(vec![offer(seen(&resp), &spec)]),
                    Err(e) => Err(ProviderError::Internal(http_error_text(&e))),
                }
            }
            // Tries to have a user-data placeholder filled outside a launch.
            "placeholder" => {
                match send("POST", &target()?, vec![], Some(b"{{user-data}}".to_vec())) {
                    Ok(resp) => Ok(vec![offer(seen(&resp), &spec)]),
                    Err(e) => Err(ProviderError::Internal(http_error_text(&e))),
                }
            }
            other => Err(ProviderError::Unsupported(format!("unknown mode {other}"))),
        }
    }
}

export!(Hostile);
