//! tgp-apiserver: an in-memory Kubernetes API server for tgp's tests and demo.
//!
//! Exists because no real Kubernetes can run here, yet the operator's production code
//! (kube `Client`, `Api`, `Controller`, watchers, finalizers, event `Recorder`,
//! kube-lease-manager) must run unchanged over real HTTP from an ordinary kubeconfig.
//!
//! Layout: [`registry`] (served kinds), [`store`] (objects and write semantics),
//! [`fields`] (server-side-apply ownership), [`patch`], [`schema`] (CRD schema and CEL
//! checks on writes, and [`schema::prune`]: unknown fields dropped from custom resources as
//! kube-apiserver drops them, reported per `fieldValidation`), [`selector`], [`watch`],
//! [`discovery`], [`http`] (REST front end), [`hooks`] (request log, fault injection),
//! [`server`] ([`DevApiServer`]).

pub mod discovery;
pub mod error;
pub mod fields;
pub mod hooks;
pub mod http;
pub mod meta;
pub mod patch;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod server;
pub mod store;
pub mod watch;

pub use error::{ApiError, FieldError, FieldErrorKind};
pub use hooks::{Fault, RecordedRequest, VerbMatch};
pub use registry::ResourceType;
pub use schema::FieldValidation;
pub use server::{DevApiServer, kubeconfig_yaml};
pub use store::{Part, Store, WriteOptions, Written};
