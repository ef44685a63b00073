//! The mock provider plugin, through the real host, against the mock cloud simulator: every
//! operation of the contract, with the simulator's own state as the witness.

use std::time::Duration;

use tgp::embedded::{MOCK_PLUGIN, mock_grants};
use tgp::plugins::{
    Balance, BootstrapDelivery, CallError, GpuSpec, HostConfig, InstanceState, LaunchRequest,
    Plugin, PluginHost, ProviderError, Tag, TerminateOutcome, UserData,
};
use tgp_cloudsim::{MockCloud, MockCloudConfig};

async fn setup(config: MockCloudConfig) -> (PluginHost, MockCloud, Plugin) {
    let api_key = config.api_key.clone();
    let cloud = MockCloud::start(config).await.expect("simulator starts");
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let plugin = host
        .load(
            MOCK_PLUGIN.to_vec(),
            mock_grants("mock", &cloud.base_url(), &api_key),
        )
        .await
        .expect("mock plugin loads");
    (host, cloud, plugin)
}

fn slow_boot() -> MockCloudConfig {
    MockCloudConfig {
        boot_delay: Duration::from_secs(30),
        run_delay: Duration::from_secs(30),
        stop_delay: Duration::from_secs(30),
        ..MockCloudConfig::default()
    }
}

fn h100() -> GpuSpec {
    GpuSpec {
        gpu_type: "H100-SXM".into(),
        count: 1,
        regions: vec![],
        spot: false,
        max_price_per_hour: None,
        aliases: Vec::new(),
    }
}

#[tokio::test]
async fn round_trip_through_the_host() {
    let (_host, cloud, plugin) = setup(slow_boot()).await;

    // quote: well-formed offers for the request only, cheapest first.
    let offers = plugin.quote(&h100()).await.expect("quote");
    assert!(!offers.is_empty());
    assert!(
        offers
            .iter()
            .all(|o| o.gpu_type == "H100-SXM" && o.count == 1 && !o.spot)
    );
    assert!(
        offers
            .windows(2)
            .all(|w| w[0].price_per_hour <= w[1].price_per_hour),
        "sorted by price"
    );
    let offer = offers[0].clone();

    // launch: the simulator sees our name, tags and user data.
    let owner = Tag {
        key: "tgp.io/cluster".into(),
        value: "c1".into(),
    };
    let req = LaunchRequest {
        offer: offer.clone(),
        instance_name: "tgp-test-1".into(),
        tags: vec![
            owner.clone(),
            Tag {
                key: "tgp.io/request-uid".into(),
                value: "u1".into(),
            },
        ],
        user_data: None,
        image: None,
        terminate_after_seconds: None,
    };
    // The document stays with the host, which fills it into the plugin's request body.
    let document = UserData::new(
        "#cloud-config\nruncmd: [\"echo \\\"hi\\\"\"]",
        BootstrapDelivery::CloudInit,
    );
    let launched = plugin.launch(&req, Some(&document)).await.expect("launch");
    assert_eq!(launched.name, "tgp-test-1");
    let sim = cloud.instances();
    assert_eq!(sim.len(), 1);
    assert_eq!(sim[0].id, launched.instance_id);
    assert_eq!(
        sim[0].tags.get("tgp.io/cluster").map(String::as_str),
        Some("c1")
    );
    assert_eq!(
        sim[0].user_data.as_deref(),
        Some("#cloud-config\nruncmd: [\"echo \\\"hi\\\"\"]"),
        "the cloud received the document exactly, through the plugin's JSON body"
    );

    // verify: pending first, running once the simulated clock passes the boot delays.
    let v = plugin.verify(&launched.instance_id).await.expect("verify");
    assert_eq!(v.state, InstanceState::Pending);
    cloud.advance(Duration::from_secs(61));
    let v = plugin.verify(&launched.instance_id).await.expect("verify");
    assert_eq!(v.state, InstanceState::Running);
    assert!(v.public_ip.is_some(), "running instances have an address");

    // balance: a number, in micro-dollars.
    match plugin.balance().await.expect("balance") {
        Balance::Amount(a) => assert!(a.available > 0 && a.available <= 100_000_000, "{a:?}"),
        Balance::Unsupported => panic!("the mock cloud has a balance"),
    }

    // list-owned: finds what launch created, by tag, and nothing else.
    let other = LaunchRequest {
        instance_name: "not-ours".into(),
        tags: vec![Tag {
            key: "tgp.io/cluster".into(),
            value: "c2".into(),
        }],
        ..req.clone()
    };
    plugin.launch(&other, None).await.expect("second launch");
    let owned = plugin.list_owned(&owner).await.expect("list-owned");
    assert_eq!(owned.len(), 1, "{owned:?}");
    assert_eq!(owned[0].instance_id, launched.instance_id);

    // terminate twice: terminating, then (once gone) already gone or terminated; never an error.
    let first = plugin
        .terminate(&launched.instance_id)
        .await
        .expect("terminate");
    assert!(
        matches!(
            first,
            TerminateOutcome::Terminating | TerminateOutcome::Terminated
        ),
        "{first:?}"
    );
    cloud.advance(Duration::from_secs(31));
    let second = plugin
        .terminate(&launched.instance_id)
        .await
        .expect("terminate again");
    assert!(
        matches!(
            second,
            TerminateOutcome::Terminated | TerminateOutcome::AlreadyGone
        ),
        "{second:?}"
    );
    let gone = plugin
        .terminate("i-never-existed")
        .await
        .expect("terminate unknown");
    assert_eq!(gone, TerminateOutcome::AlreadyGone);

    // verify of an unknown id is not-found.
    match plugin.verify("i-never-existed").await {
        Err(CallError::Provider(ProviderError::NotFound(_))) => {}
        other => panic!("expected not-found, got {other:?}"),
    }
}

#[tokio::test]
async fn typed_errors_from_the_cloud() {
    let (_host, cloud, plugin) = setup(MockCloudConfig::default()).await;
    let offer = plugin.quote(&h100()).await.expect("quote")[0].clone();
    let req = LaunchRequest {
        offer,
        instance_name: "tgp-e".into(),
        tags: vec![],
        user_data: None,
        image: None,
        terminate_after_seconds: None,
    };

    cloud.set_balance(0);
    match plugin.launch(&req, None).await {
        Err(CallError::Provider(ProviderError::Billing(_))) => {}
        other => panic!("expected billing, got {other:?}"),
    }
    assert!(
        cloud.live_instances().is_empty(),
        "a refused launch leaves nothing"
    );
}

#[tokio::test]
async fn wrong_key_is_an_auth_error() {
    let cloud = MockCloud::start(MockCloudConfig::default())
        .await
        .expect("simulator");
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let plugin = host
        .load(
            MOCK_PLUGIN.to_vec(),
            mock_grants("mock", &cloud.base_url(), "wrong-key"),
        )
        .await
        .expect("loads");
    match plugin.quote(&h100()).await {
        Err(CallError::Provider(ProviderError::Auth(_))) => {}
        other => panic!("expected auth, got {other:?}"),
    }
}

/// The SDK README's example, compiled by this crate's build script, loads and answers.
#[tokio::test]
async fn sdk_readme_example_loads_and_answers() {
    let path = std::path::PathBuf::from(env!("TGP_TEST_PLUGIN_DIR"))
        .join("examples")
        .join("minimal.wasm");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let grants = tgp::plugins::Grants {
        provider_name: "minimal".into(),
        ..Default::default()
    };
    let plugin = host
        .load(bytes, grants)
        .await
        .expect("the README example is a valid provider");
    assert_eq!(plugin.contract_version(), tgp::plugins::CONTRACT_VERSION);
    assert!(!plugin.info().name.is_empty());
}
