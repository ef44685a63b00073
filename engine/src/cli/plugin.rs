//! `tgp plugin ...`: look inside a provider plugin and call it, through the same host the
//! operator uses, without a cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;

use super::OutputFormat;
use crate::plugins::{Grants, Limits, Plugin, PluginHost, SecretValue};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print a plugin's name, version, contract version, capabilities (including the hosts it
    /// declares it will call, given --config), size and compile time.
    Inspect(InspectArgs),
    /// Call one operation of a plugin and print the result (or its typed error) as JSON.
    Call(CallArgs),
    /// Run the conformance scenarios against a simulator personality (mock, runpod, lambda,
    /// vast: started in-process, faults injected) or a URL, and print a pass/fail table.
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The component file (.wasm).
    pub file: PathBuf,
    /// A simulator personality (mock, runpod, lambda, vast) or an API base URL.
    #[arg(long)]
    pub against: String,
    /// With a URL: the API key the plugin uses (as secret `api_key`).
    #[arg(long, env = "TGP_TEST_API_KEY", default_value = "")]
    pub api_key: String,
    /// Extra plugin configuration (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The component file (.wasm).
    pub file: PathBuf,
    /// A plugin configuration value (repeatable): the hosts a plugin declares usually follow its
    /// configuration (e.g. `base_url`).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Operations `tgp plugin call` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    Info,
    Quote,
    Launch,
    Verify,
    Terminate,
    Balance,
    ListOwned,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The component file (.wasm).
    pub file: PathBuf,
    /// The operation to call.
    #[arg(value_enum)]
    pub operation: Op,
    /// The operation's argument as JSON: a gpu-spec for quote, a launch-request for launch, an
    /// instance id (a JSON string, or bare text) for verify and terminate, a tag
    /// (`{"key":..,"value":..}`) for list-owned.
    #[arg(long)]
    pub input: Option<String>,
    /// A plugin configuration value (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// A secret the host substitutes for `{{secret:NAME}}` (repeatable). Never shown in output.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    pub secrets: Vec<String>,
    /// An origin the plugin may reach, `scheme://host[:port]` (repeatable).
    #[arg(long = "allow-host", value_name = "URL")]
    pub allow_hosts: Vec<String>,
    /// Per-call deadline in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// Bad command-line input for `tgp plugin`.
#[derive(Debug, thiserror::Error)]
pub enum PluginArgsError {
    #[error("{flag} {given:?}: expected NAME=VALUE")]
    NotAPair { flag: &'static str, given: String },
    #[error("--input is required for {0:?}")]
    MissingInput(Op),
    #[error("--input is not valid for {op:?}: {reason}")]
    BadInput { op: Op, reason: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn pairs(
    flag: &'static str,
    items: &[String],
) -> Result<BTreeMap<String, String>, PluginArgsError> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(PluginArgsError::NotAPair {
                flag,
                given: item.clone(),
            }),
        })
        .collect()
}

fn read(path: &PathBuf) -> Result<Vec<u8>, PluginArgsError> {
    std::fs::read(path).map_err(|source| PluginArgsError::Read {
        path: path.clone(),
        source,
    })
}

fn name_from_path(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into())
}

#[derive(Serialize)]
struct Inspection<'a> {
    file: String,
    name: &'a str,
    version: &'a str,
    contract_version: &'a str,
    digest: &'a str,
    size_bytes: u64,
    compile_ms: f64,
    from_cache: bool,
    info: &'a crate::plugins::ProviderInfo,
}

fn inspection<'a>(path: &Path, plugin: &'a Plugin) -> Inspection<'a> {
    let info = plugin.info();
    Inspection {
        file: path.display().to_string(),
        name: &info.name,
        version: &info.version,
        contract_version: plugin.contract_version(),
        digest: plugin.digest(),
        size_bytes: plugin.size_bytes(),
        compile_ms: plugin.compile_time().as_secs_f64() * 1000.0,
        from_cache: plugin.loaded_from_cache(),
        info,
    }
}

fn render_inspection(i: &Inspection<'_>) -> String {
    let ops: Vec<String> = i
        .info
        .supported_operations
        .iter()
        .map(|o| o.name().to_string())
        .collect();
    let deliveries: Vec<String> = i
        .info
        .capabilities
        .bootstrap
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    let limits: Vec<String> = i
        .info
        .rate_limits
        .iter()
        .map(|r| {
            let op = r
                .operation
                .map(|o| o.name().to_string())
                .unwrap_or_else(|| "all calls".into());
            format!("{op}: {} per {} s", r.requests, r.per_seconds)
        })
        .collect();
    let hosts = i.info.capabilities.hosts.clone();
    let or_none = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    format!(
        "file:             {}\nname:             {}\nversion:          {}\ncontract:         tgp:provider@{}\ndigest:           sha256:{}\nsize:             {} bytes\ncompile time:     {:.1} ms{}\noperations:       {}\nspot:             {}\nbalance:          {}\nbootstrap:        {}\nhosts:            {}\nrate limits:      {}\n",
        i.file,
        i.name,
        i.version,
        i.contract_version,
        i.digest,
        i.size_bytes,
        i.compile_ms,
        if i.from_cache { " (from cache)" } else { "" },
        or_none(ops),
        i.info.capabilities.spot,
        i.info.capabilities.balance,
        or_none(deliveries),
        or_none(hosts),
        or_none(limits),
    )
}

async fn inspect(args: InspectArgs, host: &PluginHost) -> anyhow::Result<i32> {
    let bytes = read(&args.file)?;
    let grants = Grants {
        provider_name: name_from_path(&args.file),
        allowed_hosts: vec![],
        secrets: BTreeMap::new(),
        auth: None,
        config: pairs("--config", &args.config)?,
        limits: Limits::default(),
    };
    // Offline: no host is reachable, and the hosts the plugin declares are shown, not checked.
    let plugin = host.load_offline(bytes, grants).await?;
    let i = inspection(&args.file, &plugin);
    match args.output {
        OutputFormat::Table => print!("{}", render_inspection(&i)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&i)?),
    }
    Ok(0)
}

fn parse_input<T: serde::de::DeserializeOwned>(
    op: Op,
    input: &Option<String>,
) -> Result<T, PluginArgsError> {
    let text = input.as_deref().ok_or(PluginArgsError::MissingInput(op))?;
    serde_json::from_str(text).map_err(|e| PluginArgsError::BadInput {
        op,
        reason: e.to_string(),
    })
}

fn parse_id(op: Op, input: &Option<String>) -> Result<String, PluginArgsError> {
    let text = input.as_deref().ok_or(PluginArgsError::MissingInput(op))?;
    Ok(match serde_json::from_str::<Value>(text) {
        Ok(Value::String(s)) => s,
        _ => text.to_string(),
    })
}

/// Calls `op` and returns `Ok(json)` or `Err(json of the typed error)`.
pub async fn call_op(
    plugin: &Plugin,
    op: Op,
    input: &Option<String>,
) -> Result<Result<Value, Value>, PluginArgsError> {
    fn done<T: Serialize, E: Serialize>(r: Result<T, E>) -> Result<Value, Value> {
        match r {
            Ok(v) => Ok(serde_json::to_value(v).unwrap_or(Value::Null)),
            Err(e) => Err(serde_json::to_value(e).unwrap_or(Value::Null)),
        }
    }
    Ok(match op {
        Op::Info => done(plugin.call_info().await),
        Op::Quote => done(plugin.quote(&parse_input(op, input)?).await),
        Op::Launch => done(plugin.launch(&parse_input(op, input)?, None).await),
        Op::Verify => done(plugin.verify(&parse_id(op, input)?).await),
        Op::Terminate => done(plugin.terminate(&parse_id(op, input)?).await),
        Op::Balance => done(plugin.balance().await),
        Op::ListOwned => done(plugin.list_owned(&parse_input(op, input)?).await),
    })
}

async fn call(args: CallArgs, host: &PluginHost) -> anyhow::Result<i32> {
    let bytes = read(&args.file)?;
    let config = pairs("--config", &args.config)?;
    let secrets = pairs("--secret", &args.secrets)?
        .into_iter()
        .map(|(k, v)| (k, SecretValue::from(v)))
        .collect();
    let limits = Limits {
        call_timeout: Duration::from_secs(args.timeout.max(1)),
        ..Limits::default()
    };
    let grants = Grants {
        provider_name: name_from_path(&args.file),
        allowed_hosts: args.allow_hosts.clone(),
        secrets,
        auth: None,
        config,
        limits,
    };
    let plugin = host.load(bytes, grants).await?;
    match call_op(&plugin, args.operation, &args.input).await? {
        Ok(value) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "ok": value }))?
            );
            Ok(0)
        }
        Err(error) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "error": error }))?
            );
            Ok(1)
        }
    }
}

async fn test(args: TestArgs, host: &PluginHost) -> anyhow::Result<i32> {
    use crate::conformance::{self, Personality, Target};
    use clap::ValueEnum;
    let bytes = read(&args.file)?;
    let extra = pairs("--config", &args.config)?;
    let target = match Personality::from_str(&args.against, true) {
        Ok(p) => Target::simulator(p).await?,
        Err(_) if args.against.starts_with("http://") || args.against.starts_with("https://") => {
            Target::url(&args.against, &args.api_key)
        }
        Err(_) => anyhow::bail!(
            "--against {:?}: expected mock, runpod, lambda, vast or an http(s) URL",
            args.against
        ),
    };
    let report = conformance::run(host, bytes, &target, &extra).await?;
    match args.output {
        OutputFormat::Table => print!("{}", conformance::render(&report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.passed() { 0 } else { 1 })
}

/// Runs a `tgp plugin` subcommand; returns the process exit code.
pub async fn run(cmd: PluginCommand, host: &PluginHost) -> anyhow::Result<i32> {
    match cmd {
        PluginCommand::Inspect(args) => inspect(args, host).await,
        PluginCommand::Call(args) => call(args, host).await,
        PluginCommand::Test(args) => test(args, host).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::{BootstrapDelivery, Capabilities, Operation, ProviderInfo};

    #[test]
    fn inspection_shows_the_declared_hosts() {
        let mut info = ProviderInfo {
            name: "p".into(),
            version: "1.2.3".into(),
            supported_operations: vec![Operation::Quote],
            capabilities: Capabilities {
                spot: false,
                balance: false,
                bootstrap: vec![BootstrapDelivery::CloudInit],
                hosts: vec![
                    "https://api.example.com".into(),
                    "http://127.0.0.1:9".into(),
                ],
                auth: None,
                self_terminate: false,
            },
            rate_limits: vec![],
        };
        let inspection = |info: &ProviderInfo| {
            render_inspection(&Inspection {
                file: "p.wasm".into(),
                name: "p",
                version: "1.2.3",
                contract_version: "0.3.0",
                digest: "00",
                size_bytes: 1,
                compile_ms: 1.0,
                from_cache: false,
                info,
            })
        };
        let text = inspection(&info);
        assert!(
            text.contains("\nhosts:            https://api.example.com, http://127.0.0.1:9\n"),
            "{text}"
        );
        info.capabilities.hosts.clear();
        assert!(inspection(&info).contains("\nhosts:            none\n"));
    }
}
