//! Where provider plugin modules come from, and the check that makes them safe to hand to the
//! plugin host.
//!
//! The operator swaps provider plugins at run time from sources it does not control: a
//! ConfigMap anyone with edit rights in its namespace can change, a web server, an OCI registry.
//! The one thing it trusts is the sha256 digest written in the GPUProvider resource. So every
//! remote source must name a digest, every fetch runs under a deadline and a size cap (a
//! hostile or broken server can neither hang the controller nor fill its memory), and the bytes
//! are hashed and compared with the digest before anything else looks at them: nothing is
//! compiled, cached or run before that check passed. A local path is for development and images
//! that ship their plugins; its digest is optional.
//!
//! URL sources are `https://` (plain http only to loopback), and so are OCI registries (plain
//! http only when `spec.module.oci.plainHttp` asks for it, to a loopback registry): the
//! server's certificate is checked against the public roots plus the CA certificates of
//! `tgp run --module-ca-file` ([`ModuleCaBundle`], read and checked at start-up), and a
//! certificate that is not accepted is a refusal of its own ([`FetchError::TlsUntrusted`]).
//!
//! Verified bytes are also kept on disk by digest ([`ModuleStore`]), so that a restarted operator
//! can load a pinned module, or roll back to one, without its source.
//!
//! This module knows nothing of the plugin host: it turns a [`ModuleSource`] into verified bytes
//! ([`Fetcher::fetch`]) or a typed [`FetchError`] whose [`FetchError::reason`] is the word the
//! GPUProvider's `Loaded` condition carries.
//!
//! [`ModuleSource`]: crate::crd::gpuprovider::ModuleSource

mod ca;
mod configmap;
mod digest;
mod error;
mod fetch;
mod http;
mod oci;
mod source;
mod store;
mod tls;

pub use ca::{CaBundleError, MODULE_CA_FLAG, ModuleCaBundle};
pub use digest::ModuleDigest;
pub use error::{FetchError, TlsProblem};
pub use fetch::{FetchLimits, Fetched, Fetcher};
pub use oci::{ACCEPTED_LAYER_MEDIA_TYPES, TGP_LAYER_MEDIA_TYPE, registry_auth_from_docker_config};
pub use source::{ModuleLocation, ModuleRequest, is_loopback_host};
pub use store::{DEFAULT_MAX_BYTES as MODULE_STORE_MAX_BYTES, ModuleStore};
