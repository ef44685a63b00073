//! The trait a provider implements: one associated function per exported operation.
//!
//! The functions are static (no `self`): a plugin instance may be created per call or reused at
//! the host's discretion, so a provider keeps no state between calls. Everything it needs comes
//! from its configuration ([`crate::config`]) and its cloud's API ([`crate::http`]). This also
//! keeps [`crate::export_provider!`] trivial: it only needs a type name.

use crate::types::{
    Balance, GpuSpec, Instance, LaunchRequest, ProviderError, ProviderInfo, QuoteResult, Tag,
    TerminateOutcome,
};

fn unsupported(operation: &str) -> ProviderError {
    ProviderError::unsupported(format!("this provider does not implement `{operation}`"))
}

/// A cloud provider. Implement it for a unit struct and pass that struct to
/// [`crate::export_provider!`].
///
/// Only [`Provider::info`] is required. Every other operation answers
/// [`ProviderError::Unsupported`] until overridden; list the ones you implement in
/// [`ProviderInfo::supported_operations`].
pub trait Provider {
    /// Name, version, supported operations, capabilities (including the hosts the provider
    /// will call, computed from its configuration: see [`ProviderInfo::hosts`]) and rate
    /// limits. Must not fail and should not call the network: the host calls it at load time,
    /// and refuses the plugin if it declares a host the operator did not grant.
    fn info() -> ProviderInfo;

    /// Priced offers matching `spec` (`Ok(offers.into())`), and the vendor names seen that no
    /// canonical GPU matches ([`QuoteResult::unrecognized`]). Match the vendor's names against
    /// the plugin's own catalogue and the spec's aliases ([`GpuSpec::is_alias`]).
    fn quote(spec: GpuSpec) -> Result<QuoteResult, ProviderError> {
        let _ = spec;
        Err(unsupported("quote"))
    }

    /// Launches one instance from an offer returned by `quote`. The instance name is
    /// deterministic per request and attempt: a launch retried after an unclear answer should
    /// find an existing instance of that name (and return it) rather than create a second one,
    /// where the vendor's API makes that possible. The bootstrap document is sealed: place it
    /// with [`crate::user_data`].
    fn launch(req: LaunchRequest) -> Result<Instance, ProviderError> {
        let _ = req;
        Err(unsupported("launch"))
    }

    /// The current state of an instance. An id the provider does not know answers
    /// [`ProviderError::NotFound`].
    fn verify(instance_id: String) -> Result<Instance, ProviderError> {
        let _ = instance_id;
        Err(unsupported("verify"))
    }

    /// Starts (or confirms) the termination of an instance.
    fn terminate(instance_id: String) -> Result<TerminateOutcome, ProviderError> {
        let _ = instance_id;
        Err(unsupported("terminate"))
    }

    /// The account's spendable balance. A provider without a balance API keeps this default:
    /// `Ok(Balance::Unsupported)` is the contract's normal answer for "no balance to report"
    /// (the engine then skips the balance pre-check), not an error.
    fn balance() -> Result<Balance, ProviderError> {
        Ok(Balance::Unsupported)
    }

    /// Every instance carrying `owner` (same key and value), whatever its state. Filter by the
    /// tag first, then interpret the rest: an instance whose state cannot be read is reported
    /// as [`crate::InstanceState::Unknown`] with its `vendor_state`, never a failed listing.
    fn list_owned(owner: Tag) -> Result<Vec<Instance>, ProviderError> {
        let _ = owner;
        Err(unsupported("list-owned"))
    }
}

/// Exports a [`Provider`] as the component's `tgp:provider/provider` interface.
///
/// Call it once, at the root of the provider's crate (a `cdylib`):
///
/// ```ignore
/// tgp_provider_sdk::export_provider!(MyProvider);
/// ```
///
/// It expands to a private adapter type implementing the generated wit-bindgen `Guest` trait by
/// delegating to `MyProvider`, and to wit-bindgen's export macro for that adapter, which emits
/// the canonical-ABI functions and the component-type section. Every call first installs a panic
/// hook that logs panics through the host. The provider crate needs no wit-bindgen dependency.
/// On non-wasm targets only the adapter is compiled (so `cargo test` type-checks it); the export
/// symbols exist only in the component.
/// Calling it twice in one component is a link error (duplicate export symbols).
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        const _: () = {
            struct __TgpProviderExport;

            impl $crate::__private::Guest for __TgpProviderExport {
                fn info() -> $crate::ProviderInfo {
                    $crate::__private::enter();
                    <$provider as $crate::Provider>::info()
                }
                fn quote(spec: $crate::GpuSpec) -> ::core::result::Result<$crate::QuoteResult, $crate::ProviderError> {
                    $crate::__private::enter();
                    <$provider as $crate::Provider>::quote(spec)
                }
                fn launch(req: $crate::LaunchRequest) -> ::core::result::Result<$crate::Instance, $crate::ProviderError> {
                    $crate::__private::enter();
                    <$provider as $crate::Provider>::launch(req)
                }
                fn verify(instance_id: ::std::string::String) -> ::core::result::Result<$crate::Instance, $crate::ProviderError> {
                    $crate::__private::enter();
                    <$provider as $crate::Provider>::verify(instance_id)
                }
                fn terminate(instance_id: ::std::string::String) -> ::core::result::Result<$crate::TerminateOutcome, $crate::ProviderError> {
                    $crate::__private::enter();
                    <$provider as $crate::Provider>::terminate(instance_id)
                }
                fn balance() -> ::core::result::Result<$crate::Balance, $crate::ProviderError> {
                    $crate::__private::enter();
                    <$provider as $crate::Provider>::balance()
                }
                fn list_owned(owner: $crate::Tag) -> ::core::result::Result<::std::vec::Vec<$crate::Instance>, $crate::ProviderError> {
                    $crate::__private::enter();
                    <$provider as $crate::Provider>::list_owned(owner)
                }
            }

            // The canonical-ABI symbols only mean something in a component; natively their names
            // (`tgp:provider/provider@0.3.0#info`) would break the linker's export list, so a
            // native build (tests, `cargo check`) type-checks the adapter above and stops there.
            #[cfg(target_arch = "wasm32")]
            $crate::__private::export_glue!(__TgpProviderExport with_types_in $crate::__bindings);
            // Natively, reference the adapter so the provider's code does not look unused.
            #[cfg(not(target_arch = "wasm32"))]
            let _ = (
                <__TgpProviderExport as $crate::__private::Guest>::info,
                <__TgpProviderExport as $crate::__private::Guest>::quote,
                <__TgpProviderExport as $crate::__private::Guest>::launch,
                <__TgpProviderExport as $crate::__private::Guest>::verify,
                <__TgpProviderExport as $crate::__private::Guest>::terminate,
                <__TgpProviderExport as $crate::__private::Guest>::balance,
                <__TgpProviderExport as $crate::__private::Guest>::list_owned,
            );
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OnlyInfo;
    impl Provider for OnlyInfo {
        fn info() -> ProviderInfo {
            ProviderInfo::new("only-info", "0.0.1")
        }
    }

    #[test]
    fn unimplemented_operations_answer_unsupported() {
        assert!(
            matches!(OnlyInfo::quote(GpuSpec::new("RTX4090", 1)), Err(ProviderError::Unsupported(m)) if m.contains("quote"))
        );
        assert!(matches!(
            OnlyInfo::verify("i".into()),
            Err(ProviderError::Unsupported(_))
        ));
        assert!(matches!(
            OnlyInfo::terminate("i".into()),
            Err(ProviderError::Unsupported(_))
        ));
        assert!(
            matches!(OnlyInfo::balance(), Ok(Balance::Unsupported)),
            "no balance API is a normal answer, not an error"
        );
        assert!(
            matches!(OnlyInfo::list_owned(Tag::new("k", "v")), Err(ProviderError::Unsupported(m)) if m.contains("list-owned"))
        );
    }
}
