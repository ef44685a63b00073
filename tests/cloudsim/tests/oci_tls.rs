//! The OCI registry over HTTPS: a client that trusts the generated test CA gets the whole pull
//! API (ping, token auth whose realm is https too, manifests, blobs, a blob transfer broken off
//! on purpose); a client that does not trust it (public roots only, or another CA) fails the
//! handshake before any request is answered; the certificate can be made wrong on purpose.

use std::time::Duration;

use tgp_cloudsim::files::{LeafCert, TestCa, TlsOptions, Validity};
use tgp_cloudsim::oci::{OciRegistry, OciRegistryConfig, TGP_MODULE_MEDIA_TYPE};

mod common;
use common::{chain, client_trusting, module};

#[tokio::test]
async fn plain_http_stays_the_default() {
    let reg = OciRegistry::start(OciRegistryConfig::default())
        .await
        .unwrap();
    assert_eq!(reg.ca_pem(), None);
    assert_eq!(reg.base_url(), format!("http://{}", reg.registry()));
    let ping = reqwest::get(format!("{}/v2/", reg.base_url()))
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    reg.shutdown().await;
}

#[tokio::test]
async fn https_with_the_test_ca_serves_the_pull_api_and_token_auth() {
    let reg = OciRegistry::start_tls(OciRegistryConfig {
        credentials: Some(("puller".into(), "s3cret".into())),
    })
    .await
    .unwrap();
    let base = reg.base_url();
    assert_eq!(base, format!("https://{}", reg.registry()));
    assert!(
        reg.registry().starts_with("127.0.0.1:"),
        "{}",
        reg.registry()
    );
    let ca = reg.ca_pem().expect("a TLS registry has a CA").to_string();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let client = client_trusting(&ca);
    let m = module();
    let pushed = reg.push_module("tgp/mock", "v1", &m, TGP_MODULE_MEDIA_TYPE);
    assert_eq!(
        pushed.reference,
        format!("{}/tgp/mock:v1", reg.registry()),
        "references name the registry without a scheme"
    );

    // The challenge sends the client to an https token endpoint on the same server.
    let denied = client
        .get(format!("{base}/v2/tgp/mock/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let challenge = denied.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{base}/token\"")),
        "{challenge}"
    );
    let token: serde_json::Value = client
        .get(format!("{base}/token"))
        .basic_auth("puller", Some("s3cret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_string();

    let manifest = client
        .get(format!("{base}/v2/tgp/mock/manifests/v1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), 200);
    assert_eq!(
        manifest.headers()["docker-content-digest"]
            .to_str()
            .unwrap(),
        pushed.manifest_digest
    );
    let blob_url = format!("{base}/v2/tgp/mock/blobs/{}", pushed.layer_digest);
    let blob = client
        .get(&blob_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(blob.bytes().await.unwrap(), m);

    // The truncation knob over TLS: the announced length, part of the body, then a break.
    reg.truncate_blob(&pushed.layer_digest, 1000);
    let cut = client
        .get(&blob_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(cut.content_length(), Some(m.len() as u64));
    assert!(cut.bytes().await.is_err(), "the body breaks off");

    // By name as well as by address.
    let by_name = client
        .get(format!("https://localhost:{}/v2/", reg.addr().port()))
        .send()
        .await
        .unwrap();
    assert_eq!(by_name.status(), 401, "reached, and asks for a token");
    reg.shutdown().await;
}

#[tokio::test]
async fn clients_that_do_not_trust_the_ca_fail_the_handshake() {
    let reg = OciRegistry::start_tls(OciRegistryConfig::default())
        .await
        .unwrap();
    reg.push_module("tgp/mock", "v1", &module(), TGP_MODULE_MEDIA_TYPE);
    let url = format!("{}/v2/tgp/mock/manifests/v1", reg.base_url());

    // Public roots only.
    let public = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = public.get(&url).send().await.unwrap_err();
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));

    // Another CA.
    let other = TestCa::generate("another CA").unwrap();
    let err = client_trusting(&other.pem())
        .get(&url)
        .send()
        .await
        .unwrap_err();
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));

    // Plain http to the TLS port is no registry either.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/v2/", reg.registry()))
        .send()
        .await;
    assert!(
        plain.map(|r| r.status() != 200).unwrap_or(true),
        "plain http does not reach the API"
    );
    assert!(
        reg.calls().is_empty(),
        "nothing got past the handshake: {:?}",
        reg.calls()
    );
    reg.shutdown().await;
}

#[tokio::test]
async fn the_certificate_can_be_wrong_on_purpose() {
    for (leaf, says) in [
        (
            LeafCert {
                names: vec!["registry.example.invalid".into()],
                validity: Validity::Current,
            },
            ["not valid for name", "NotValidForName"],
        ),
        (
            LeafCert {
                validity: Validity::Expired,
                ..LeafCert::default()
            },
            ["expired", "Expired"],
        ),
    ] {
        let reg = OciRegistry::start_tls_with(
            OciRegistryConfig::default(),
            TlsOptions { leaf, ca: None },
        )
        .await
        .unwrap();
        let client = client_trusting(reg.ca_pem().unwrap());
        let err = client
            .get(format!("{}/v2/", reg.base_url()))
            .send()
            .await
            .unwrap_err();
        let text = chain(&err);
        assert!(
            text.contains("invalid peer certificate") && says.iter().any(|s| text.contains(s)),
            "{says:?} in {text}"
        );
        reg.shutdown().await;
    }
}
