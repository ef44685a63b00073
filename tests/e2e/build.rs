//! Builds the WebAssembly components the end-to-end tests load.
fn main() {
    let dir = tgp_wasm_build::build_with(
        &[
            "tgp-test-plugin-hostile",
            "tgp-test-plugin-future-contract",
            "tgp-provider-mock",
            "tgp-provider-runpod",
            "tgp-provider-lambda",
            "tgp-provider-vast",
        ],
        // The SDK README's complete example: compiled here so it cannot rot, loaded by a test.
        &[("tgp-provider-sdk", "minimal")],
    );
    println!("cargo:rustc-env=TGP_TEST_PLUGIN_DIR={}", dir.display());
}
