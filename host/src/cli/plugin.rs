//! `sluice plugin ...`: inspect a plugin and test it in isolation.

use std::path::PathBuf;
use std::process::ExitCode;

use sluice::config::Config;
use sluice::plugin_test;
use sluice::runtime::{Limits, Runtime, WriteMode};

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
}

pub fn run(config: Config, command: &PluginCommand) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(Some(config.cache_dir()))?;
    let limits = Limits {
        memory_bytes: (config.plugins.memory_mb as usize) << 20,
        batch_timeout: std::time::Duration::from_millis(config.plugins.batch_timeout_ms),
    };
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
    }
}
