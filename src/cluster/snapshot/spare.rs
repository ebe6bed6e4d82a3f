//! Spare copies of a snapshot's `/var`, made ahead of time so that a restore starts its nodes
//! without copying first.
//!
//! A restored node must run on its own copy of the saved /var (two restores share no file either
//! may write). Making that copy took a helper container and ~0.6 s for one node, all of it before
//! the node could start. So `snapshot save` makes one spare copy per node right away, and each
//! restore takes the spares (claims them) and, once its nodes are Ready, makes the next ones
//! while it waits for the controllers — off the path to a running cluster.
//!
//! A spare is a volume labelled with its snapshot and node; it is ready only once an empty
//! *marker* volume names it, made after the copy succeeded. A restore claims a spare by
//! removing its marker: Docker removes a volume once, so two restores cannot both claim one,
//! and a spare whose copy was cut short never had a marker. A claimed spare belongs to the
//! restored node, whose container names it in [`LABEL_VAR_VOLUME`] so that deleting the cluster
//! removes it. A spare left without a marker (a save or restore killed mid-copy, or a claim that
//! never reached its container) is never used; `snapshot delete` removes it with the rest.

use super::volume_copy::{copy_volumes, VolumeCopy};
use super::{SavedNode, Snapshot, LABEL_SNAPSHOT};
use crate::cluster::Result;
use crate::runtime::Runtime;

/// On a spare and its marker: the node whose /var it copies.
const LABEL_SPARE_FOR: &str = "dev.berth.spare.node";
/// On a marker: the spare volume it declares ready.
const LABEL_SPARE_READY: &str = "dev.berth.spare.ready";
/// On a marker: the bytes the spare holds.
const LABEL_SPARE_BYTES: &str = "dev.berth.spare.bytes";
/// On a spare and its marker: the save of the snapshot it copies (a spare of an earlier save of
/// the same name is never taken).
const LABEL_SPARE_SAVE: &str = "dev.berth.spare.save";
/// On a restored node's container: the named volume holding its /var, removed with the cluster.
pub const LABEL_VAR_VOLUME: &str = "dev.berth.var-volume";

/// A ready spare of one saved node.
#[derive(Debug, Clone, PartialEq)]
pub struct Spare {
    pub node: String,
    pub volume: String,
    marker: String,
    pub bytes: u64,
    /// The save whose /var it copies.
    pub save: String,
}

/// The ready spares of every snapshot, from their markers: (snapshot, spare).
pub async fn all_ready(docker: &dyn Runtime) -> Result<Vec<(String, Spare)>> {
    let markers = docker.list_volumes(LABEL_SPARE_READY).await?;
    Ok(markers
        .into_iter()
        .filter_map(|(name, labels)| Some((labels.get(LABEL_SNAPSHOT)?.clone(), spare_of_marker(name, &labels)?)))
        .collect())
}

/// The ready spares of `snapshot`: of its name and its save.
pub async fn ready(docker: &dyn Runtime, snapshot: &Snapshot) -> Result<Vec<Spare>> {
    Ok(all_ready(docker)
        .await?
        .into_iter()
        .filter(|(of, spare)| *of == snapshot.name && spare.save == snapshot.save_id)
        .map(|(_, spare)| spare)
        .collect())
}

fn spare_of_marker(marker: String, labels: &std::collections::HashMap<String, String>) -> Option<Spare> {
    Some(Spare {
        node: labels.get(LABEL_SPARE_FOR)?.clone(),
        volume: labels.get(LABEL_SPARE_READY)?.clone(),
        bytes: labels.get(LABEL_SPARE_BYTES).and_then(|b| b.parse().ok()).unwrap_or(0),
        save: labels.get(LABEL_SPARE_SAVE)?.clone(),
        marker,
    })
}

/// Claims a ready spare of `node` from `spares`: the volume that is now the caller's, or None
/// when there is none (or another restore took each one first).
pub async fn claim(docker: &dyn Runtime, spares: &[Spare], node: &str) -> Result<Option<String>> {
    for spare in spares.iter().filter(|s| s.node == node) {
        if docker.remove_volume_if_there(&spare.marker).await? {
            return Ok(Some(spare.volume.clone()));
        }
    }
    Ok(None)
}

/// Makes a spare for every saved node of `snapshot` that has none ready, all in one helper.
/// Everything made carries `labels` (a save's or a restore's id), so whoever made it can sweep
/// it up if interrupted.
pub async fn make(docker: &dyn Runtime, snapshot: &Snapshot, labels: &[(String, String)]) -> Result<()> {
    let have: Vec<String> = ready(docker, snapshot).await?.into_iter().map(|s| s.node).collect();
    let wanted: Vec<&SavedNode> = snapshot.nodes.iter().filter(|n| n.volume.is_some() && !have.contains(&n.name)).collect();
    let Some(first) = wanted.first() else { return Ok(()) };
    let mut volumes = Vec::new();
    for node in &wanted {
        let volume = crate::ids::unique(&format!("berth-spare-{}-{}", snapshot.name, node.name));
        let spare_labels =
            with(labels, [(LABEL_SNAPSHOT, &snapshot.name), (LABEL_SPARE_FOR, &node.name), (LABEL_SPARE_SAVE, &snapshot.save_id)]);
        docker.create_volume(&volume, &spare_labels).await?;
        volumes.push(volume);
    }
    let copies: Vec<VolumeCopy> =
        wanted.iter().zip(&volumes).filter_map(|(node, to)| Some(VolumeCopy { from: node.volume.as_deref()?, to })).collect();
    let bytes = match copy_volumes(docker, &first.image, &copies, labels).await {
        Ok(bytes) => bytes,
        Err(e) => {
            // Never ready without a marker, but still disk: not left for `snapshot delete`.
            for volume in &volumes {
                let _ = docker.remove_volume(volume).await;
            }
            return Err(e);
        }
    };
    for ((node, volume), bytes) in wanted.iter().zip(&volumes).zip(bytes) {
        let marker_labels = with(
            labels,
            [
                (LABEL_SNAPSHOT, &snapshot.name),
                (LABEL_SPARE_FOR, &node.name),
                (LABEL_SPARE_READY, volume),
                (LABEL_SPARE_BYTES, &bytes.to_string()),
                (LABEL_SPARE_SAVE, &snapshot.save_id),
            ],
        );
        docker.create_volume(&format!("{volume}-ready"), &marker_labels).await?;
    }
    Ok(())
}

fn with<const N: usize>(labels: &[(String, String)], more: [(&str, &String); N]) -> Vec<(String, String)> {
    labels.iter().cloned().chain(more.into_iter().map(|(k, v)| (k.to_string(), v.clone()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn only_a_marker_names_a_ready_spare() {
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        let marker = labels(&[
            (LABEL_SNAPSHOT, "s"),
            (LABEL_SPARE_FOR, "c-control-plane"),
            (LABEL_SPARE_READY, "berth-spare-s-c-control-plane-1"),
            (LABEL_SPARE_BYTES, "4096"),
            (LABEL_SPARE_SAVE, "save-1-00ff00ff"),
        ]);
        assert_eq!(
            spare_of_marker("m".into(), &marker),
            Some(Spare {
                node: "c-control-plane".into(),
                volume: "berth-spare-s-c-control-plane-1".into(),
                marker: "m".into(),
                bytes: 4096,
                save: "save-1-00ff00ff".into(),
            })
        );
        // The spare volume itself, and the snapshot's saved volume, are not markers.
        let spare = labels(&[(LABEL_SNAPSHOT, "s"), (LABEL_SPARE_FOR, "c-control-plane")]);
        assert_eq!(spare_of_marker("v".into(), &spare), None);
        assert_eq!(spare_of_marker("v".into(), &labels(&[(LABEL_SNAPSHOT, "s")])), None);
    }
}
