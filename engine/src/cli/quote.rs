//! `tgp quote`: prices across every configured provider, fetched in parallel.

use std::path::PathBuf;

use clap::Args;

use super::{OutputFormat, table};
use crate::catalog;
use crate::embedded;
use crate::money::{self, Usd};
use crate::plugins::{GpuSpec, PluginHost};
use crate::pricing::{self, QuoteReport};
use crate::provider_set::{self, ProviderSetFile};

#[derive(Debug, Args)]
pub struct QuoteArgs {
    /// Canonical GPU type, e.g. H100-SXM, A100-80GB, L40S, RTX4090.
    #[arg(long)]
    pub gpu: String,
    /// GPUs per instance.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Acceptable region (repeat for several); none means any.
    #[arg(long = "region")]
    pub regions: Vec<String>,
    /// Price interruptible (spot) capacity.
    #[arg(long)]
    pub spot: bool,
    /// Highest acceptable price per hour for the whole instance, in USD (e.g. 2.50).
    #[arg(long)]
    pub max_price: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Providers file (YAML). Without it, the embedded mock provider and simulator are used.
    #[arg(long, env = "TGP_PROVIDERS")]
    pub providers: Option<PathBuf>,
}

/// Why the arguments cannot be quoted.
#[derive(Debug, thiserror::Error)]
pub enum QuoteArgsError {
    #[error("--gpu: unknown GPU type {given:?}; known types: {known}")]
    UnknownGpu { given: String, known: String },
    #[error("--count: must be at least 1")]
    ZeroCount,
    #[error("--max-price: {0}")]
    Price(money::MoneyError),
}

impl QuoteArgs {
    /// The request these arguments describe, checked.
    pub fn spec(&self) -> Result<GpuSpec, QuoteArgsError> {
        let gpu_type = catalog::canonical(&self.gpu).ok_or_else(|| QuoteArgsError::UnknownGpu {
            given: self.gpu.clone(),
            known: catalog::known_names(),
        })?;
        if self.count == 0 {
            return Err(QuoteArgsError::ZeroCount);
        }
        let max_price_per_hour = self
            .max_price
            .as_deref()
            .map(money::parse_usd)
            .transpose()
            .map_err(QuoteArgsError::Price)?;
        Ok(GpuSpec {
            gpu_type: gpu_type.to_string(),
            count: self.count,
            regions: self.regions.clone(),
            spot: self.spot,
            max_price_per_hour,
            aliases: crate::catalog::aliases(&gpu_type),
        })
    }
}

/// Renders a report as the table users see.
pub fn render_table(report: &QuoteReport) -> String {
    let rows: Vec<Vec<String>> = report
        .offers
        .iter()
        .map(|r| {
            vec![
                r.provider.clone(),
                r.offer.gpu_type.clone(),
                r.offer.count.to_string(),
                r.offer.region.clone(),
                if r.offer.spot {
                    "spot".into()
                } else {
                    "on-demand".into()
                },
                Usd(r.offer.price_per_hour).to_string(),
                r.offer.availability.name().into(),
                r.offer.offer_id.clone(),
            ]
        })
        .collect();
    let mut out = if rows.is_empty() {
        "no offers fit the request\n".to_string()
    } else {
        table::render(
            &[
                "PROVIDER",
                "GPU",
                "COUNT",
                "REGION",
                "KIND",
                "PRICE/H",
                "AVAILABILITY",
                "OFFER",
            ],
            &rows,
        )
    };
    for (provider, why) in report.failures() {
        out.push_str(&format!("provider {provider}: {why}\n"));
    }
    out
}

/// Runs the command; returns the process exit code.
pub async fn run(args: QuoteArgs, host: &PluginHost) -> anyhow::Result<i32> {
    let spec = args.spec()?;
    let mut _default_setup = None;
    let mut load_failures = Vec::new();
    let providers = match &args.providers {
        Some(path) => {
            let file = ProviderSetFile::read(path)?;
            let (ok, failed) = provider_set::load_all(host, &file.providers).await;
            load_failures = failed;
            ok
        }
        None => {
            let setup = embedded::start_default(host).await?;
            let providers = setup.providers.clone();
            _default_setup = Some(setup);
            providers
        }
    };
    let report = pricing::quote_all(&providers, &spec).await;
    match args.output {
        OutputFormat::Table => {
            print!("{}", render_table(&report));
            for failure in &load_failures {
                println!("{failure}");
            }
        }
        OutputFormat::Json => {
            let failures: Vec<String> = load_failures.iter().map(|f| f.to_string()).collect();
            let value = serde_json::json!({ "offers": report.offers, "providers": report.providers, "loadFailures": failures });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
    }
    let answered = report.providers.iter().any(|p| p.skipped.is_none());
    Ok(if answered { 0 } else { 1 })
}
