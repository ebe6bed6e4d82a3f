//! berth: disposable, real Kubernetes clusters on one machine, with Docker containers as nodes.
//!
//! The binary (`main.rs`) is a thin shell over [`cli`]. Modules, each owning one concern, leaves
//! first: [`version`] (Kubernetes versions), [`patches`] (patch syntax), [`image_ref`] (image
//! references), [`ids`], [`interrupt`] (the signals that stop a command), [`wait`], [`ui`]
//! (output); [`config`] (the cluster config file), [`host_ports`], [`addons`] (the add-on
//! catalogue), [`kubeadm`] (kubeadm's config), [`containerd`] (containerd's), [`kube`] (the API
//! client and waits), [`kubeconfig`] (the user's kubeconfig); [`runtime`] (the container engine,
//! behind the `Runtime` trait), [`registry`], [`node_image`] (building node images); [`cluster`]
//! (every cluster operation) and [`cli`] over them. `scripts/check-module-deps` keeps the
//! imports between them free of circles.

pub mod addons;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod containerd;
pub mod host_ports;
pub mod ids;
pub mod image_ref;
pub mod interrupt;
pub mod kube;
pub mod kubeadm;
pub mod kubeconfig;
pub mod node_image;
pub mod patches;
pub mod registry;
pub mod rootless;
pub mod runtime;
pub mod ui;
pub mod version;
pub mod wait;
