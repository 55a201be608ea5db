//! `sluice plugin ...`: inspect and test a plugin in isolation, scaffold a
//! new one, and manage the plugins of a running host through its admin API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use sluice::admin::DeployRequest;
use sluice::admin::client::AdminClient;
use sluice::config::{Config, Uses};
use sluice::lifecycle::{Change, Fixtures, Status};
use sluice::pipeline::shadow::ShadowReport;
use sluice::plugin_test;
use sluice::runtime::{Layer, Runtime, WriteMode};
use sluice::scaffold::Template;

/// Where the admin API is reached (`SLUICE_ADMIN_URL` or `--admin`).
#[derive(clap::Args, Clone)]
pub struct AdminArgs {
    /// The running host's admin API.
    #[arg(
        long = "admin",
        env = "SLUICE_ADMIN_URL",
        default_value = "http://127.0.0.1:7070"
    )]
    pub url: String,
}

#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Run a plugin on fixture events and print (or check) its outputs.
    Test {
        /// The plugin component (.wasm).
        wasm: PathBuf,
        /// Fixture events, one raw event per line.
        #[arg(long)]
        fixtures: PathBuf,
        /// Expected output rows; the command fails on any difference.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// Write the actual outputs to the --expect file instead of comparing.
        #[arg(long, requires = "expect")]
        bless: bool,
    },
    /// Print a plugin's name, version, layer and declared tables.
    Info {
        /// The plugin component (.wasm).
        wasm: PathBuf,
    },
    /// Scaffold a self-contained plugin crate (sources, the SDK and WIT it
    /// builds with, fixtures, README) in a new directory.
    New {
        /// Crate name, e.g. `acme-silver-rules`.
        name: String,
        /// What the plugin is for.
        #[arg(long, required_unless_present = "layer", conflicts_with = "layer")]
        template: Option<Template>,
        /// The layer's default template: bronze, silver-rule (silver) or
        /// gold-table (gold).
        #[arg(long)]
        layer: Option<Layer>,
        /// Where to create it (default: the current directory).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Deploy a component to a layer of the running host (validated first;
    /// swapped in at the next batch boundary).
    Deploy {
        layer: Layer,
        wasm: PathBuf,
        /// Run it beside the active plugin and report differences instead.
        #[arg(long)]
        shadow: bool,
        /// A directory with `events.ndjson` and `expected.ndjson` the plugin
        /// must pass before it goes live.
        #[arg(long)]
        fixtures: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Go back to the version deployed before the active one.
    Rollback {
        layer: Layer,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make the shadow candidate of a layer the active plugin.
    Promote {
        layer: Layer,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show a layer's shadow run report (`--stop` ends the shadow run).
    Shadow {
        layer: Layer,
        #[arg(long)]
        stop: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The active plugin of each layer.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Every deploy, rollback, shadow run and refusal, oldest first.
    History {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// The config sections a plugin command reads: running a component
/// locally needs the plugin limits; the others need none.
pub fn uses(command: &PluginCommand) -> Uses {
    match command {
        PluginCommand::Info { .. } | PluginCommand::Test { .. } => Uses {
            plugins: true,
            ..Uses::NOTHING
        },
        _ => Uses::NOTHING,
    }
}

pub async fn run(config: Config, command: &PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Info { .. } | PluginCommand::Test { .. } => local(config, command),
        PluginCommand::New {
            name,
            template,
            layer,
            dir,
        } => {
            let template = match (template, layer) {
                (Some(template), _) => *template,
                (None, Some(layer)) => Template::for_layer(*layer),
                (None, None) => unreachable!("clap requires --template or --layer"),
            };
            let created = sluice::scaffold::create(name, template, dir)?;
            println!(
                "created {} ({} template, {} layer, contract sluice:transform@{}); \
                 next: see its README.md",
                created.display(),
                template.name(),
                template.layer(),
                sluice::scaffold::contract_version()
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => remote(command).await,
    }
}

/// Commands that talk to a running host.
async fn remote(command: &PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Deploy {
            layer,
            wasm,
            shadow,
            fixtures,
            admin,
        } => {
            let request = DeployRequest {
                wasm_base64: base64::engine::general_purpose::STANDARD.encode(
                    std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?,
                ),
                shadow: *shadow,
                fixtures: fixtures.as_deref().map(read_fixture_dir).transpose()?,
            };
            change(admin, &format!("/v1/plugins/{layer}/deploy"), &request).await?;
        }
        PluginCommand::Rollback { layer, admin } => {
            change(admin, &format!("/v1/plugins/{layer}/rollback"), &()).await?;
        }
        PluginCommand::Promote { layer, admin } => {
            change(admin, &format!("/v1/plugins/{layer}/promote"), &()).await?;
        }
        PluginCommand::Shadow { layer, stop, admin } => {
            let client = AdminClient::from_env(&admin.url)?;
            let report: Option<ShadowReport> = if *stop {
                client
                    .delete(&format!("/v1/plugins/{layer}/shadow"))
                    .await?
            } else {
                let status: Status = client.get("/v1/plugins").await?;
                status
                    .layers
                    .into_iter()
                    .find(|l| l.layer == layer.as_str())
                    .and_then(|l| l.shadow)
            };
            match report {
                Some(r) => println!("{}", serde_json::to_string_pretty(&r)?),
                None => println!("no shadow run for {layer}"),
            }
        }
        PluginCommand::List { admin } => {
            let status: Status = AdminClient::from_env(&admin.url)?
                .get("/v1/plugins")
                .await?;
            for l in &status.layers {
                println!(
                    "{:<7}{} {} sha256 {} ({} MiB, {} ms per batch){}",
                    l.layer,
                    l.name,
                    l.version,
                    &l.hash[..12.min(l.hash.len())],
                    l.memory_mb,
                    l.batch_timeout_ms,
                    l.shadow
                        .as_ref()
                        .map(|s| format!("; shadow {}", s.candidate))
                        .unwrap_or_default()
                );
            }
            println!("next batch: {}", status.next_batch);
            print_instances(&status.instances);
        }
        PluginCommand::History { admin } => {
            let status: Status = AdminClient::from_env(&admin.url)?
                .get("/v1/plugins")
                .await?;
            for e in &status.history {
                let by = match e.instance.as_str() {
                    "" => String::new(),
                    instance => format!(" by {instance}"),
                };
                println!(
                    "{} {:<6} {:<13} {}@{} from batch {} (pause {} µs){by} {}",
                    e.at,
                    e.layer,
                    e.action.name(),
                    e.name,
                    e.version,
                    e.from_batch,
                    e.pause_micros,
                    e.note
                );
            }
        }
        _ => unreachable!("local commands are handled by `local`"),
    }
    Ok(ExitCode::SUCCESS)
}

/// What each instance of a fleet says it runs (nothing alone on a lake).
fn print_instances(instances: &[sluice::lifecycle::registry::Running]) {
    if instances.is_empty() {
        return;
    }
    println!("instances sharing the registry ({}):", instances.len());
    for i in instances {
        println!("  {} (seen {})", i.instance, i.seen);
        for l in &i.layers {
            let shadow = l.shadow.as_ref().map(|s| format!("; shadow {s}"));
            println!(
                "    {:<7}{} sha256 {}{}",
                l.layer,
                l.plugin,
                &l.hash[..12.min(l.hash.len())],
                shadow.unwrap_or_default()
            );
        }
    }
}

/// Posts a change to the admin API and prints what it did.
async fn change(admin: &AdminArgs, path: &str, body: &impl serde::Serialize) -> anyhow::Result<()> {
    let change: Change = AdminClient::from_env(&admin.url)?.post(path, body).await?;
    print_change(&change);
    Ok(())
}

fn print_change(change: &Change) {
    println!(
        "{:?}: {} is {}@{} (sha256 {}) from batch {}; batches paused {} µs",
        change.action,
        change.layer,
        change.name,
        change.version,
        &change.hash[..12.min(change.hash.len())],
        change.from_batch,
        change.pause_micros
    );
}

fn read_fixture_dir(dir: &Path) -> anyhow::Result<Fixtures> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    Ok(Fixtures {
        events: read("events.ndjson")?,
        expected: read("expected.ndjson")?,
    })
}

/// Commands that need only the plugin file.
fn local(config: Config, command: &PluginCommand) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(Some(config.cache_dir()))?;
    let limits = config.plugin_limits();
    match command {
        PluginCommand::Info { wasm } => {
            let plugin = runtime.load_file(wasm, limits)?;
            let meta = plugin.meta();
            println!(
                "{} {} ({} layer) sha256 {}",
                meta.name,
                meta.version,
                meta.layer,
                plugin.hash()
            );
            println!("{}", meta.description);
            for t in &meta.outputs {
                let mode = match &t.mode {
                    WriteMode::Append => "append".to_string(),
                    WriteMode::Merge(m) => format!("merge by {}", m.keys.join(", ")),
                    WriteMode::Scd2(s) => {
                        format!("scd2 on {} tracking {}", s.key, s.tracked.join(", "))
                    }
                    WriteMode::Derived(d) => format!("derived by {}", d.keys.join(", ")),
                };
                println!("  {} [{mode}]: {}", t.name, t.description);
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Test {
            wasm,
            fixtures,
            expect,
            bless,
        } => {
            let plugin = runtime.load_file(wasm, limits)?;
            let actual = plugin_test::run(&runtime, &plugin, fixtures)?;
            let rendered: Vec<String> = actual.iter().map(|r| r.to_string()).collect();
            match (expect, bless) {
                (Some(path), true) => {
                    std::fs::write(path, rendered.join("\n") + "\n")?;
                    eprintln!("wrote {} rows to {}", actual.len(), path.display());
                    Ok(ExitCode::SUCCESS)
                }
                (Some(path), false) => {
                    let expected = plugin_test::read_expected(path)?;
                    let diffs = plugin_test::differences(&actual, &expected);
                    if diffs.is_empty() {
                        println!("ok: {} rows match {}", actual.len(), path.display());
                        Ok(ExitCode::SUCCESS)
                    } else {
                        for d in &diffs {
                            println!("{d}");
                        }
                        println!("FAILED: {} differences", diffs.len());
                        Ok(ExitCode::FAILURE)
                    }
                }
                (None, _) => {
                    for row in rendered {
                        println!("{row}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        _ => unreachable!("remote commands are handled by `remote`"),
    }
}
