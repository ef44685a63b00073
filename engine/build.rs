//! Builds the mock provider component so the binary can embed it: `tgp quote` and `tgp demo`
//! work on a fresh clone with no configuration.
fn main() {
    let dir = tgp_wasm_build::build(&["tgp-provider-mock"]);
    println!(
        "cargo:rustc-env=TGP_MOCK_PLUGIN_WASM={}",
        dir.join(tgp_wasm_build::component_file("tgp-provider-mock"))
            .display()
    );
    println!("cargo:rerun-if-changed=build.rs");
}
