//! The file server over HTTPS: a client that trusts the generated test CA gets every file, by
//! IP address and by `localhost`, with every serving knob behaving as over plain HTTP; a client
//! that does not trust it (public roots only, or another CA) fails the handshake; the
//! certificate can be made wrong on purpose (another name, expired, not yet valid).

use std::time::{Duration, Instant};

use tgp_cloudsim::files::{FileServer, LeafCert, Serve, TestCa, TlsOptions, Validity};

mod common;
use common::{chain, client_trusting, module};

#[tokio::test]
async fn plain_http_stays_the_default() {
    let files = FileServer::start().await.unwrap();
    assert!(files.base_url().starts_with("http://127.0.0.1:"));
    assert_eq!(files.ca_pem(), None);
    files.put("/m.wasm", module());
    let got = reqwest::get(files.url("/m.wasm")).await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), module());
    files.shutdown().await;
}

#[tokio::test]
async fn https_with_the_test_ca_serves_every_knob() {
    let files = FileServer::start_tls().await.unwrap();
    let base = files.base_url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let ca = files.ca_pem().expect("a TLS server has a CA").to_string();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let client = client_trusting(&ca);
    let m = module();
    files.put("/m.wasm", m.clone());

    // Normal, by IP address and by name.
    let got = client.get(files.url("/m.wasm")).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), m);
    let by_name = format!("https://localhost:{}/m.wasm", files.addr().port());
    let got = client.get(&by_name).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), m);
    let head = client.head(files.url("/m.wasm")).send().await.unwrap();
    let announced = head.headers()["content-length"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(announced, m.len().to_string());

    // Replaced bytes.
    files.set_serve("/m.wasm", Serve::Replaced(b"other".to_vec()));
    let got = client.get(files.url("/m.wasm")).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"other");

    // An error status.
    files.set_serve("/m.wasm", Serve::Status(503));
    let got = client.get(files.url("/m.wasm")).send().await.unwrap();
    assert_eq!(got.status(), 503);

    // Slow.
    files.set_serve(
        "/m.wasm",
        Serve::Slow {
            delay: Duration::from_millis(400),
        },
    );
    let started = Instant::now();
    let got = client.get(files.url("/m.wasm")).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), m);
    assert!(started.elapsed() >= Duration::from_millis(400));

    // Truncated: the whole length announced, half sent, then the connection breaks.
    files.set_serve("/m.wasm", Serve::Truncated { after: m.len() / 2 });
    let got = client.get(files.url("/m.wasm")).send().await.unwrap();
    assert_eq!(got.content_length(), Some(m.len() as u64));
    let err = got.bytes().await.expect_err("the body breaks off");
    assert!(err.is_body() || err.is_decode(), "{}", chain(&err));

    // Missing.
    let got = client.get(files.url("/absent.wasm")).send().await.unwrap();
    assert_eq!(got.status(), 404);

    let statuses: Vec<u16> = files.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 503, 200, 200, 404]);
    assert_eq!(files.requests_for("/m.wasm"), 7);
    files.shutdown().await;
}

#[tokio::test]
async fn clients_that_do_not_trust_the_ca_are_refused() {
    let files = FileServer::start_tls().await.unwrap();
    files.put("/m.wasm", module());

    // The public roots only.
    let public = reqwest::Client::builder().use_rustls_tls().build().unwrap();
    let err = public.get(files.url("/m.wasm")).send().await.unwrap_err();
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));

    // Another test CA.
    let other = TestCa::generate("another test CA").unwrap();
    assert_ne!(other.pem(), files.ca_pem().unwrap());
    let err = client_trusting(&other.pem())
        .get(files.url("/m.wasm"))
        .send()
        .await
        .unwrap_err();
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));

    // Nothing was served to either.
    assert!(files.calls().is_empty(), "{:?}", files.calls());
    files.shutdown().await;
}

#[tokio::test]
async fn wrong_certificates_on_purpose() {
    // Issued for another name.
    let files = FileServer::start_tls_with(TlsOptions {
        leaf: LeafCert {
            names: vec!["modules.example.invalid".into()],
            ..LeafCert::default()
        },
        ..TlsOptions::default()
    })
    .await
    .unwrap();
    files.put("/m.wasm", module());
    let err = client_trusting(files.ca_pem().unwrap())
        .get(files.url("/m.wasm"))
        .send()
        .await
        .unwrap_err();
    assert!(
        chain(&err).contains("not valid for name"),
        "{}",
        chain(&err)
    );
    files.shutdown().await;

    // Expired, then not yet valid; signed by a CA the test provides.
    for (validity, expected) in [
        (Validity::Expired, "expired"),
        (Validity::NotYetValid, "not valid yet"),
    ] {
        let ca = TestCa::generate("provided CA").unwrap();
        let ca_pem = ca.pem();
        let files = FileServer::start_tls_with(TlsOptions {
            leaf: LeafCert {
                validity,
                ..LeafCert::default()
            },
            ca: Some(ca),
        })
        .await
        .unwrap();
        assert_eq!(files.ca_pem(), Some(ca_pem.as_str()));
        files.put("/m.wasm", module());
        let err = client_trusting(&ca_pem)
            .get(files.url("/m.wasm"))
            .send()
            .await
            .unwrap_err();
        assert!(
            chain(&err).contains(expected),
            "{validity:?}: {}",
            chain(&err)
        );
        files.shutdown().await;
    }
}
