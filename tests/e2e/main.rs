//! berth's integration and end-to-end tests, in one binary: one link, one shared setup in
//! `common`, and one `--test-threads` budget across all of them, so the cluster tests of every
//! module share the machine's two cores instead of queueing binary after binary.
//!
//! `cli` runs anywhere. The rest run with `BERTH_E2E=1` (as `scripts/test` sets it) against
//! real Docker and the test node image, and fail — never skip — when either is missing.
//! `daemon_restart` restarts dockerd and `podman` needs a Podman service: both are `#[ignore]`d,
//! and `scripts/test` runs each alone.

mod common;

mod cli;
mod cluster;
mod daemon_restart;
mod first_hour;
mod kind_config;
mod kubeadm_validate;
mod load_balancer;
mod members;
mod multinode;
mod node_image;
mod podman;
mod registry;
mod snapshot;
mod trust;
