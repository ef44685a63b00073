//! Telling a refused server certificate apart from other transport failures.
//!
//! Both remote sources that speak TLS reach their server through reqwest with rustls: URL
//! sources with the fetcher's own client, OCI registries with the client `oci-client` builds.
//! A certificate the operator does not accept (an internal CA it was not given, a wrong name,
//! an expired certificate) needs a different fix than a server that is down, so both sources
//! look for the same rustls refusal in the error chain here and report it as
//! [`FetchError::TlsUntrusted`], naming the CA bundle that was tried.

use super::ca::ModuleCaBundle;
use super::error::{FetchError, TlsProblem};

pub(crate) use crate::error_chain::{messages as error_chain, text as error_chain_text};

/// Where a certificate was refused, for [`refused_certificate`].
pub(crate) struct TlsPeer<'a> {
    /// The source, as status shows it (`https://...`, `oci://...`).
    pub source_desc: &'a str,
    /// The spec field that names the server's host.
    pub host_field: &'static str,
    /// The CA bundle the client trusted besides the public roots.
    pub extra_roots: Option<&'a ModuleCaBundle>,
}

/// [`FetchError::TlsUntrusted`] when `e` (a failed request) is a server certificate that was
/// not accepted; `None` for any other failure.
pub(crate) fn refused_certificate(
    e: &(dyn std::error::Error + 'static),
    peer: &TlsPeer<'_>,
) -> Option<FetchError> {
    let (problem, detail) = error_chain(e).iter().find_map(|m| certificate_problem(m))?;
    Some(FetchError::TlsUntrusted {
        source_desc: peer.source_desc.to_string(),
        host_field: peer.host_field,
        problem,
        detail,
        extra_roots: peer.extra_roots.map(ModuleCaBundle::describe),
    })
}

/// What rustls says when it does not accept the server's certificate, in the error chain of a
/// failed request (the crate does not reach reqwest's TLS types, so it reads their text; the
/// fetch tests hold this to the real errors of handshakes against a test CA, for URL and OCI
/// sources).
const REFUSED_CERTIFICATE: &str = "invalid peer certificate: ";

/// The certificate problem `message` reports, and rustls' own words for it.
fn certificate_problem(message: &str) -> Option<(TlsProblem, String)> {
    let at = message.find(REFUSED_CERTIFICATE)?;
    let detail = message[at + REFUSED_CERTIFICATE.len()..].trim().to_string();
    let problem = if detail.contains("UnknownIssuer") {
        TlsProblem::UnknownIssuer
    } else if detail.contains("not valid for name") || detail.contains("NotValidForName") {
        TlsProblem::WrongName
    } else if detail.contains("expired") || detail.contains("Expired") {
        TlsProblem::Expired
    } else if detail.contains("not valid yet") || detail.contains("NotValidYet") {
        TlsProblem::NotYetValid
    } else {
        TlsProblem::Other
    };
    Some((problem, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::error_chain::testing::chain;

    const PEER: TlsPeer<'static> = TlsPeer {
        source_desc: "oci://r.example/m:1",
        host_field: "spec.module.oci.reference",
        extra_roots: None,
    };

    #[test]
    fn the_refusal_is_found_at_any_depth_of_the_chain() {
        let e = chain(&[
            "error sending request",
            "client error (Connect)",
            "invalid peer certificate: UnknownIssuer",
        ]);
        assert_eq!(
            error_chain_text(&e),
            "error sending request: client error (Connect): invalid peer certificate: \
             UnknownIssuer"
        );
        match refused_certificate(&e, &PEER) {
            Some(FetchError::TlsUntrusted {
                problem,
                detail,
                host_field,
                extra_roots,
                ..
            }) => {
                assert_eq!(problem, TlsProblem::UnknownIssuer);
                assert_eq!(detail, "UnknownIssuer");
                assert_eq!(host_field, "spec.module.oci.reference");
                assert_eq!(extra_roots, None);
            }
            other => panic!("{other:?}"),
        }
        let other = chain(&["error sending request", "connection refused"]);
        assert!(refused_certificate(&other, &PEER).is_none());
    }

    #[test]
    fn problems_are_told_apart_by_rustls_words() {
        for (words, problem) in [
            ("UnknownIssuer", TlsProblem::UnknownIssuer),
            (
                "certificate not valid for name \"127.0.0.1\"",
                TlsProblem::WrongName,
            ),
            (
                "certificate expired: verification time",
                TlsProblem::Expired,
            ),
            ("certificate not valid yet", TlsProblem::NotYetValid),
            ("BadSignature", TlsProblem::Other),
        ] {
            let message = format!("invalid peer certificate: {words}");
            assert_eq!(
                certificate_problem(&message),
                Some((problem, words.to_string())),
                "{words}"
            );
        }
        assert_eq!(certificate_problem("received corrupt message"), None);
    }
}
