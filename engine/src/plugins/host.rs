//! [`PluginHost`]: the engine, linker, ticker and HTTP client shared by every plugin, and the
//! loader that turns component bytes into a validated [`Plugin`].

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use super::auth::HostAuth;
use super::bindings::{ProviderPlugin, ProviderPluginPre};
use super::cache;
use super::config::HostConfig;
use super::declared;
use super::engine::{self, Ticker};
use super::error::{HostError, LoadError};
use super::grants::Grants;
use super::http::{self, HttpContext};
use super::logging::LogLimiter;
use super::plugin::{Meta, Plugin, Runtime};
use super::state::{HostState, PluginShared};
use super::version;

/// Runs provider plugins. Create one per process.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<HostState>,
    ticker: Arc<Ticker>,
    client: reqwest::Client,
    cfg: HostConfig,
    pooling: bool,
}

impl PluginHost {
    /// Creates the engine (pooling per `cfg.pooling`), the linker and the epoch ticker.
    pub fn new(cfg: HostConfig) -> Result<Self, HostError> {
        let (engine, pooling) = engine::build(&cfg)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| HostError::Engine {
            message: format!("linking WASI: {e:#}"),
        })?;
        ProviderPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| HostError::Engine {
                message: format!("linking the provider imports: {e:#}"),
            })?;
        let ticker = Ticker::start(engine.clone(), cfg.epoch_tick)?;
        let client = http::client()?;
        Ok(Self {
            engine,
            linker,
            ticker,
            client,
            cfg,
            pooling,
        })
    }

    /// The contract version this host implements.
    pub fn contract_version() -> &'static str {
        version::CONTRACT_VERSION
    }

    /// The directory of the compile cache, if any (`--cache-dir`).
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cfg.cache_dir.as_deref()
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling_enabled(&self) -> bool {
        self.pooling
    }

    /// Compiles (or loads from the cache) a component, checks its contract version, prepares it
    /// for instantiation, validates it with an `info()` call and checks the hosts it declares
    /// (`info().capabilities.hosts`) against `grants.allowed_hosts`: a plugin declaring an
    /// origin that is not granted is refused with [`LoadError::UngrantedHost`], a declared host
    /// that is not an origin with [`LoadError::MalformedHost`]. Every request is still checked
    /// against the allow-list when it is made.
    pub async fn load(&self, bytes: Vec<u8>, grants: Grants) -> Result<Plugin, LoadError> {
        self.load_with(bytes, grants, true).await
    }

    /// Loads a plugin to look at it, e.g. for `tgp plugin inspect`: like [`PluginHost::load`],
    /// but with no network at all (the grants' allowed hosts are dropped, so every request the
    /// plugin makes is refused) and without refusing it over the hosts it declares, which can
    /// then be read from `info().capabilities.hosts`. Nothing is widened: a plugin loaded this
    /// way can reach no host.
    pub async fn load_offline(
        &self,
        bytes: Vec<u8>,
        mut grants: Grants,
    ) -> Result<Plugin, LoadError> {
        grants.allowed_hosts.clear();
        self.load_with(bytes, grants, false).await
    }

    async fn load_with(
        &self,
        bytes: Vec<u8>,
        grants: Grants,
        check_hosts: bool,
    ) -> Result<Plugin, LoadError> {
        let started = Instant::now();
        let engine = self.engine.clone();
        let cache_dir = self.cfg.cache_dir.clone();
        let size_bytes = bytes.len() as u64;
        let (compiled, digest, contract_version) = tokio::task::spawn_blocking(move || {
            let digest = cache::sha256_hex(&bytes);
            let compiled = cache::compile(&engine, &bytes, &digest, cache_dir.as_deref())?;
            let contract_version = version::check(&engine, &compiled.component)?;
            Ok::<_, LoadError>((compiled, digest, contract_version))
        })
        .await
        .map_err(|e| LoadError::Internal(format!("compile task failed: {e}")))??;
        let compile_time = started.elapsed();

        let pre = self
            .linker
            .instantiate_pre(&compiled.component)
            .map_err(|e| LoadError::Link {
                message: format!("{e:#}"),
            })?;
        let pre = ProviderPluginPre::new(pre).map_err(|e| LoadError::Link {
            message: format!("{e:#}"),
        })?;

        let shared = Arc::new(PluginShared {
            provider: grants.provider_name.clone(),
            plugin_version: Default::default(),
            http: HttpContext::new(self.client.clone(), &grants),
            log: LogLimiter::new(grants.limits.log_lines_per_second),
            config: grants.config.clone(),
        });
        let runtime = Runtime::new(
            pre,
            shared.clone(),
            grants.limits.clone(),
            self.ticker.clone(),
        );
        let info = Plugin::validate(&runtime)
            .await
            .map_err(LoadError::InfoFailed)?;
        if check_hosts {
            declared::check(&info.capabilities.hosts, shared.http.allow_list())?;
        }
        // Credentials: the operator's scheme, else the one the plugin declares.
        let (scheme, credential_hosts) = match &grants.auth {
            Some(config) => (Some(config.scheme.clone()), config.hosts.clone()),
            None => (info.capabilities.auth.clone(), Vec::new()),
        };
        if let Some(scheme) = scheme {
            let auth = HostAuth::new(
                scheme,
                &credential_hosts,
                &grants.secrets,
                shared.http.allow_list(),
            )?;
            shared.http.set_auth(auth);
        }
        let _ = shared.plugin_version.set(info.version.clone());
        tracing::info!(
            provider = %grants.provider_name,
            plugin = %info.name,
            plugin_version = %info.version,
            contract_version = %contract_version,
            hosts = ?info.capabilities.hosts,
            auth = shared.http.auth().map_or("none", |a| super::auth::scheme_name(a.scheme())),
            digest = %digest,
            from_cache = compiled.from_cache,
            compile_ms = compile_time.as_millis() as u64,
            "plugin loaded"
        );
        Ok(Plugin::new(
            runtime,
            Meta {
                info,
                digest,
                contract_version,
                size_bytes,
                compile_time,
                from_cache: compiled.from_cache,
            },
        ))
    }
}
