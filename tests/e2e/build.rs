//! Builds the WebAssembly components the end-to-end tests load.
fn main() {
    let dir = tgp_wasm_build::build_with(
        &[
            "tgp-test-plugin-hostile",
            "tgp-test-plugin-future-contract",
            "tgp-test-plugin-past-contract",
            "tgp-provider-mock",
            "tgp-provider-runpod",
            "tgp-provider-lambda",
            "tgp-provider-vast",
        ],
        // The SDK README's complete example: compiled here so it cannot rot, loaded by a test.
        &[("tgp-provider-sdk", "minimal")],
    );
    println!("cargo:rustc-env=TGP_TEST_PLUGIN_DIR={}", dir.display());
    // The mock provider once more, reporting another version: "a new version" of a running
    // provider's module for the hot-swap tests and benchmark (same code, different digest).
    let mock_v2 = tgp_wasm_build::build_variant(
        "tgp-provider-mock",
        "mock-v2",
        &[("TGP_MOCK_VERSION", "0.1.1-hotswap")],
    );
    println!("cargo:rustc-env=TGP_TEST_MOCK_V2={}", mock_v2.display());
}
