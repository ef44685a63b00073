//! The wit-bindgen output for the contract (`sdk/wit/provider.wit`, a copy of the repository's
//! `wit/provider.wit` vendored so the crate builds on its own; a test keeps the two identical),
//! kept in one place.
//!
//! Provider authors never name anything in here: the SDK re-exports the data types it wants to
//! be public, wraps the imports in safe, testable functions (`host`) and expands the export glue
//! through `export_provider!`. The module is `pub` only because that macro expands inside the
//! provider's crate and must reach the generated items; it is not part of the SDK's API.

wit_bindgen::generate!({
    world: "provider-plugin",
    path: "wit",
    // The export macro must be callable from the provider's crate, not only from this one...
    pub_export_macro: true,
    export_macro_name: "__export_provider_plugin",
    // ...and must find these bindings there without the provider depending on wit-bindgen.
    default_bindings_module: "::tgp_provider_sdk::__bindings",
    additional_derives: [Clone, PartialEq, Eq],
});
