//! Fetching a module over HTTP(S): a size cap enforced while streaming (an announced length over
//! the cap is refused before the body is read), a transfer that ends early reported as
//! truncated, redirects re-checked hop by hop (https, or plain http to loopback only).
//!
//! Server certificates are checked against the public roots plus the CA certificates of
//! `tgp run --module-ca-file` ([`ModuleCaBundle`]); a certificate that is not accepted (unknown
//! issuer, wrong name, expired) is [`FetchError::TlsUntrusted`], told apart from other
//! transport failures so that the status says what to do about it.

use std::time::Duration;

use futures::StreamExt;

use super::ca::ModuleCaBundle;
use super::error::FetchError;
use super::source::is_loopback_host;
use super::tls::{TlsPeer, error_chain_text, refused_certificate};

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;

/// The client used for URL sources: the public roots, plus the certificates of `extra_roots`.
pub(crate) fn client(
    connect_timeout: Duration,
    extra_roots: Option<&ModuleCaBundle>,
) -> Result<reqwest::Client, reqwest::Error> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let url = attempt.url();
        let allowed = url.scheme() == "https"
            || (url.scheme() == "http" && url.host_str().is_some_and(is_loopback_host));
        if allowed {
            attempt.follow()
        } else {
            let to = url.to_string();
            attempt.error(format!(
                "redirect to {to} refused: modules are fetched over https only"
            ))
        }
    });
    let mut builder = reqwest::Client::builder()
        .redirect(policy)
        .connect_timeout(connect_timeout)
        .user_agent(concat!("tgp/", env!("CARGO_PKG_VERSION")));
    for cert in extra_roots
        .map(ModuleCaBundle::certificates)
        .unwrap_or_default()
    {
        builder = builder.add_root_certificate(cert.clone());
    }
    builder.build()
}

/// GETs `url`, reading at most `max_bytes`. The caller bounds the whole call with its deadline.
/// `extra_roots` is the bundle `client` was built with (named when a certificate is refused).
pub(crate) async fn fetch(
    client: &reqwest::Client,
    extra_roots: Option<&ModuleCaBundle>,
    url: &url::Url,
    max_bytes: u64,
) -> Result<Vec<u8>, FetchError> {
    let source_desc = url.to_string();
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| transport(&source_desc, &e, extra_roots))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(FetchError::Unauthorized {
            source_desc,
            detail: format!("HTTP {status}"),
        });
    }
    if !status.is_success() {
        return Err(FetchError::HttpStatus {
            status: status.as_u16(),
            source_desc,
        });
    }
    let announced = response.content_length();
    if let Some(len) = announced
        && len > max_bytes
    {
        return Err(FetchError::TooLarge {
            limit: max_bytes,
            size: Some(len),
            source_desc,
        });
    }
    read_capped(response.bytes_stream(), announced, max_bytes, &source_desc).await
}

/// Reads a body stream into memory, refusing more than `max_bytes`; an error in the middle of
/// the body (the connection closed early) is a truncated module.
pub(crate) async fn read_capped<S, B, E>(
    mut stream: S,
    announced: Option<u64>,
    max_bytes: u64,
    source_desc: &str,
) -> Result<Vec<u8>, FetchError>
where
    S: futures::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let capacity = announced.unwrap_or(64 * 1024).min(max_bytes) as usize;
    let mut out = Vec::with_capacity(capacity);
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(source = source_desc, error = %e, "module transfer broke off");
                return Err(FetchError::Truncated {
                    received: out.len() as u64,
                    expected: announced,
                    source_desc: source_desc.to_string(),
                });
            }
        };
        let chunk = chunk.as_ref();
        if out.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(FetchError::TooLarge {
                limit: max_bytes,
                size: announced,
                source_desc: source_desc.to_string(),
            });
        }
        out.extend_from_slice(chunk);
    }
    if let Some(len) = announced
        && (out.len() as u64) < len
    {
        return Err(FetchError::Truncated {
            received: out.len() as u64,
            expected: Some(len),
            source_desc: source_desc.to_string(),
        });
    }
    Ok(out)
}

fn transport(
    source_desc: &str,
    e: &reqwest::Error,
    extra_roots: Option<&ModuleCaBundle>,
) -> FetchError {
    if e.is_timeout() {
        // The connect timeout; the overall deadline is the caller's.
        return FetchError::Transport {
            source_desc: source_desc.to_string(),
            detail: "connection timed out".into(),
        };
    }
    let peer = TlsPeer {
        source_desc,
        host_field: "spec.module.url",
        extra_roots,
    };
    refused_certificate(e, &peer).unwrap_or_else(|| FetchError::Transport {
        source_desc: source_desc.to_string(),
        detail: error_chain_text(e),
    })
}
