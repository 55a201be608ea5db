//! The plugin runtime: loads transform components with wasmtime, caches their
//! compiled form, and runs one batch at a time inside memory and time limits.
//!
//! Invariant: nothing a plugin does can take the host down. Every call runs on
//! a fresh instance in its own store; traps, timeouts, memory blow-ups and bad
//! outputs come back as a [`PluginFailure`] the pipeline routes to quarantine.

mod bindings;
pub mod contract;
pub mod embedded;
mod purity;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use deltalake::arrow::array::RecordBatch;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use contract::{Layer, PluginMeta, RequestedLimits, TableDecl, WriteMode};

use bindings::sluice::transform::types::Level;
use bindings::{Transform, TransformPre};

/// How often the epoch ticks; the granularity of batch time budgets.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits applied to every call into a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: usize,
    pub batch_timeout: Duration,
}

impl Limits {
    /// What a plugin gets: its own request where it asks for one, never more
    /// than the host's maximum (`self`).
    pub fn capped(self, requested: RequestedLimits) -> Limits {
        let memory = requested
            .memory_mb
            .map(|mb| (mb as usize) << 20)
            .unwrap_or(self.memory_bytes);
        let timeout = requested
            .batch_timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(self.batch_timeout);
        Limits {
            memory_bytes: memory.min(self.memory_bytes),
            batch_timeout: timeout.min(self.batch_timeout),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 512 << 20,
            batch_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a batch could not be transformed. `reason()` is the quarantine reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginFailure {
    #[error("plugin exceeded its time budget of {0:?}")]
    Timeout(Duration),
    #[error("plugin exceeded its memory limit: {0}")]
    Memory(String),
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("plugin refused the batch: {0}")]
    Refused(String),
    #[error("plugin output does not match its declaration: {0}")]
    BadOutput(String),
}

impl PluginFailure {
    pub fn reason(&self) -> &'static str {
        match self {
            PluginFailure::Timeout(_) => "plugin_timeout",
            PluginFailure::Memory(_) => "plugin_out_of_memory",
            PluginFailure::Trap(_) => "plugin_trap",
            PluginFailure::Refused(_) => "plugin_error",
            PluginFailure::BadOutput(_) => "plugin_bad_output",
        }
    }
}

/// Per-store state: an empty WASI context (no files, no network, frozen
/// clocks, seeded randomness: see `purity.rs`) and limits.
struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    plugin: Arc<str>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::sluice::transform::types::Host for PluginState {}

impl bindings::sluice::transform::host::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let message: String = message.chars().take(4096).collect();
        let plugin = &*self.plugin;
        match level {
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// Owns the wasmtime engine and the compiled-artifact cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    cache_dir: Option<PathBuf>,
    ticker: Arc<EpochTicker>,
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while any runtime or
/// plugin holds it; time budgets only work while it runs.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Arc<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        Arc::new(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Creates an engine with epoch interruption and a ticker thread.
    /// `cache_dir` keeps precompiled plugins so a restart does not recompile.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Runtime> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true).wasm_component_model(true);
        let engine = Engine::new(&config).map_err(wasm_err)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(wasm_err)?;
        Transform::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(wasm_err)?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker,
            cache_dir,
            ticker,
        })
    }

    /// Compiles (or loads from cache) and instantiates a component once to
    /// read its metadata. Fails if it does not fit the `transform` world.
    pub fn load(&self, wasm: &[u8], limits: Limits) -> anyhow::Result<LoadedPlugin> {
        let hash = hex::encode(Sha256::digest(wasm));
        let component = self.compile_cached(wasm, &hash)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(wasm_err)
            .context("the component does not fit the sluice:transform world")?;
        let pre = TransformPre::new(pre)
            .map_err(wasm_err)
            .context("the component does not export the transform world")?;
        let mut plugin = LoadedPlugin {
            engine: self.engine.clone(),
            pre,
            meta: None,
            hash,
            limits,
            _ticker: self.ticker.clone(),
        };
        let info = plugin
            .call(&purity::seed_of(plugin.hash.as_bytes()), |t, store| {
                t.call_info(store)
            })
            .map_err(|f| anyhow::anyhow!("reading plugin info: {f}"))?;
        let meta = PluginMeta::from_wit(info).map_err(|e| anyhow::anyhow!("plugin info: {e}"))?;
        plugin.limits = limits.capped(meta.requested);
        if plugin.limits != limits {
            tracing::info!(plugin = %meta.producer(), limits = ?plugin.limits, "plugin manifest limits");
        }
        plugin.meta = Some(Arc::new(meta));
        Ok(plugin)
    }

    /// Loads a plugin from a file.
    pub fn load_file(&self, path: &Path, limits: Limits) -> anyhow::Result<LoadedPlugin> {
        let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.load(&wasm, limits)
            .with_context(|| format!("loading plugin {}", path.display()))
    }

    fn compile_cached(&self, wasm: &[u8], hash: &str) -> anyhow::Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, wasm).map_err(wasm_err);
        };
        let path = dir.join(format!("{hash}-{}.cwasm", self.engine_fingerprint()));
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an
            // engine with the same fingerprint, in a directory we own.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!("ignoring unusable plugin cache {}: {e}", path.display()),
            }
        }
        let compiled = self.engine.precompile_component(wasm).map_err(wasm_err)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &compiled)?;
        std::fs::rename(&tmp, &path)?;
        // SAFETY: just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(wasm_err)
    }

    fn engine_fingerprint(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

/// wasmtime has its own error type; keep its full chain in the message.
fn wasm_err(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

/// A compiled plugin ready to run batches.
#[derive(Clone)]
pub struct LoadedPlugin {
    engine: Engine,
    pre: TransformPre<PluginState>,
    meta: Option<Arc<PluginMeta>>,
    hash: String,
    limits: Limits,
    _ticker: Arc<EpochTicker>,
}

impl LoadedPlugin {
    pub fn meta(&self) -> &PluginMeta {
        self.meta.as_ref().expect("metadata is read at load")
    }

    /// SHA-256 of the component bytes.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The memory and time budget each batch runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Transforms one batch; on failure retries once on a fresh instance.
    pub fn transform(
        &self,
        input: &RecordBatch,
    ) -> Result<BTreeMap<String, RecordBatch>, PluginFailure> {
        let ipc = sluice_plugin_sdk::ipc::write_batch(input).map_err(PluginFailure::Refused)?;
        // Seeded by the input itself: the pipeline's callers pass no batch
        // id, and the same rows must see the same randomness on a retry,
        // a crash recovery or a replay.
        let seed = purity::seed_of(&ipc);
        match self.transform_once(&ipc, &seed) {
            Ok(out) => Ok(out),
            Err(first) => {
                tracing::warn!(plugin = %self.meta().producer(), "{first}; retrying on a fresh instance");
                self.transform_once(&ipc, &seed)
            }
        }
    }

    fn transform_once(
        &self,
        ipc: &[u8],
        seed: &purity::Seed,
    ) -> Result<BTreeMap<String, RecordBatch>, PluginFailure> {
        let started = Instant::now();
        let result = self.call(seed, |t, store| t.call_transform(store, ipc))?;
        tracing::debug!(plugin = %self.meta().producer(), elapsed = ?started.elapsed(), "batch transformed");
        let outputs = result.map_err(|e| PluginFailure::Refused(describe_error(e)))?;
        contract::decode_outputs(self.meta(), outputs).map_err(PluginFailure::BadOutput)
    }

    /// Runs `f` on a fresh instance in a fresh store with this plugin's
    /// limits; whatever randomness the plugin asks for comes from `seed`.
    fn call<R>(
        &self,
        seed: &purity::Seed,
        f: impl FnOnce(&Transform, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFailure> {
        let name: Arc<str> = self
            .meta
            .as_ref()
            .map(|m| Arc::from(m.producer()))
            .unwrap_or_else(|| Arc::from("loading"));
        let state = PluginState {
            wasi: purity::wasi_ctx(seed),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            plugin: name,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = (self.limits.batch_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1);
        store.set_epoch_deadline(ticks as u64);
        store.epoch_deadline_trap();
        let outcome = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance| f(&instance, &mut store));
        outcome.map_err(|e| self.classify(e))
    }

    fn classify(&self, error: wasmtime::Error) -> PluginFailure {
        let text = format!("{error:#}");
        if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
            return PluginFailure::Timeout(self.limits.batch_timeout);
        }
        if text.contains("grow") && (text.contains("memory") || text.contains("limit")) {
            return PluginFailure::Memory(text);
        }
        PluginFailure::Trap(text)
    }
}

fn describe_error(e: bindings::sluice::transform::types::TransformError) -> String {
    use bindings::sluice::transform::types::TransformError;
    match e {
        TransformError::BadInput(m) => format!("bad input: {m}"),
        TransformError::Internal(m) => format!("internal: {m}"),
    }
}
