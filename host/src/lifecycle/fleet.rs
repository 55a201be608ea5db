//! One registry for a fleet: on a shared lake every instance records its
//! plugin changes in the same history, follows the others' at its next step
//! boundary (the same swap a local deploy makes), and publishes what it
//! runs, so a deploy, rollback or shadow through any instance's admin API
//! reaches all of them and `sluice plugin list` shows each.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::registry::{Action, Entry, RUNNING_EVERY, Registry, Running, RunningLayer, now_rfc3339};
use super::{Control, Lifecycle};
use crate::pipeline::Pipeline;
use crate::runtime::Layer;

/// How often an instance looks for changes the others recorded.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// An instance's place in the fleet.
pub(super) struct Fleet {
    pub(super) instance: String,
    /// The last history entry applied here (its sequence number).
    followed: Option<u64>,
    /// What this instance runs, for `follow_fleet` to publish.
    running: watch::Sender<Vec<RunningLayer>>,
}

impl Lifecycle {
    /// Joins the fleet as `instance`: from now on the entries it records
    /// name it, and the others' changes are followed. The returned
    /// receiver is what [`follow_fleet`] publishes.
    pub fn join_fleet(
        &mut self,
        instance: String,
        pipeline: &Pipeline,
    ) -> (Arc<Registry>, watch::Receiver<Vec<RunningLayer>>) {
        let (running, published) = watch::channel(running_layers(pipeline));
        // What the history holds now is what `load_plugins` loaded.
        let (_, followed) = self.registry.entries_after(None);
        self.fleet = Some(Fleet {
            instance,
            followed,
            running,
        });
        (self.registry.clone(), published)
    }

    /// Says (to `follow_fleet`) what this instance runs, if it changed.
    pub(super) fn publish(&self, pipeline: &Pipeline) {
        if let Some(fleet) = &self.fleet {
            let now = running_layers(pipeline);
            fleet.running.send_if_modified(|last| {
                let changed = *last != now;
                *last = now;
                changed
            });
        }
    }

    /// Applies the changes other instances recorded since the last look:
    /// a layer whose version stack moved gets the stack's top (on
    /// probation if it was a deploy), a shadow run started or stopped
    /// elsewhere starts or stops here. A change that cannot be applied
    /// here is logged; the history stays as recorded.
    pub(super) async fn follow(&mut self, pipeline: &mut Pipeline) {
        let Some(fleet) = &mut self.fleet else {
            return;
        };
        let (entries, last) = self.registry.entries_after(fleet.followed);
        fleet.followed = last.or(fleet.followed);
        let mine = fleet.instance.clone();
        let theirs: Vec<Entry> = entries
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.instance != mine)
            .collect();
        for layer in Layer::ALL {
            let of_layer: Vec<&Entry> = theirs
                .iter()
                .filter(|e| e.layer == layer.as_str())
                .collect();
            let moved = of_layer.iter().rev().find(|e| moves_stack(e.action));
            if let Some(last) = moved
                && let Err(e) = self.follow_stack(pipeline, layer, last.action).await
            {
                tracing::error!(%layer, "following another instance's plugin change: {e:#}");
            }
            let shadow = of_layer.iter().rev().find(|e| moves_shadow(e.action));
            if let Some(last) = shadow
                && let Err(e) = self.follow_shadow(pipeline, layer, last).await
            {
                tracing::error!(%layer, "following another instance's shadow run: {e:#}");
            }
        }
    }

    async fn follow_stack(
        &mut self,
        pipeline: &mut Pipeline,
        layer: Layer,
        last: Action,
    ) -> anyhow::Result<()> {
        let plugin = self.load_active(layer).await?;
        if plugin.hash() == pipeline.active(layer).hash() {
            return Ok(());
        }
        pipeline.check_fits(layer, &plugin)?;
        let probation = match last {
            Action::Deploy | Action::Promote => self.probation_batches,
            _ => 0,
        };
        tracing::info!(
            %layer, plugin = %plugin.meta().producer(), ?last,
            "following a plugin change another instance made"
        );
        pipeline.swap(layer, plugin, probation).await.map(drop)
    }

    async fn follow_shadow(
        &mut self,
        pipeline: &mut Pipeline,
        layer: Layer,
        last: &Entry,
    ) -> anyhow::Result<()> {
        let running = pipeline.shadow(layer).map(|(p, _)| p.hash().to_string());
        match last.action {
            Action::Shadow if running.as_deref() != Some(last.hash.as_str()) => {
                let candidate = self.load_deployed(&last.hash).await?;
                tracing::info!(%layer, plugin = %candidate.meta().producer(), "following a shadow run another instance started");
                pipeline.start_shadow(layer, candidate)
            }
            Action::ShadowStop | Action::Promote if running.is_some() => {
                pipeline.stop_shadow(layer);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn moves_stack(action: Action) -> bool {
    action.pushes() || action.pops()
}

fn moves_shadow(action: Action) -> bool {
    matches!(
        action,
        Action::Shadow | Action::ShadowStop | Action::Promote
    )
}

fn running_layers(pipeline: &Pipeline) -> Vec<RunningLayer> {
    Layer::ALL
        .iter()
        .map(|&layer| RunningLayer {
            layer: layer.to_string(),
            plugin: pipeline.active(layer).meta().producer(),
            hash: pipeline.active(layer).hash().to_string(),
            shadow: pipeline.shadow(layer).map(|(p, _)| p.meta().producer()),
        })
        .collect()
}

/// Beside the pipeline of an instance on a shared lake, until `stop`:
/// looks for the others' changes every [`FOLLOW_EVERY`] and asks the
/// pipeline to apply them (`Control::Follow`), and publishes what this
/// instance runs on every change and every [`RUNNING_EVERY`]; at the end
/// takes the instance off the list.
pub async fn follow_fleet(
    registry: Arc<Registry>,
    instance: String,
    mut running: watch::Receiver<Vec<RunningLayer>>,
    control: mpsc::Sender<Control>,
    mut stop: watch::Receiver<bool>,
) {
    let mut look = tokio::time::interval(FOLLOW_EVERY);
    let mut again = tokio::time::interval(RUNNING_EVERY);
    loop {
        tokio::select! {
            _ = look.tick() => match registry.refresh().await {
                Ok(true) => {
                    if control.send(Control::Follow).await.is_err() {
                        break;
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("looking for other instances' plugin changes: {e:#}"),
            },
            changed = running.changed() => if changed.is_err() {
                break;
            } else {
                publish(&registry, &instance, &running).await;
            },
            _ = again.tick() => publish(&registry, &instance, &running).await,
            // The guard `wait_for` returns is not Send: dropped in the block.
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
        }
    }
    if let Err(e) = registry.withdraw(&instance).await {
        tracing::warn!("{e:#}");
    }
}

async fn publish(
    registry: &Registry,
    instance: &str,
    running: &watch::Receiver<Vec<RunningLayer>>,
) {
    let running = Running {
        instance: instance.to_string(),
        seen: now_rfc3339(),
        layers: running.borrow().clone(),
    };
    if let Err(e) = registry.publish(&running).await {
        tracing::warn!("saying what this instance runs: {e:#}");
    }
}
