//! berth: disposable, real Kubernetes clusters on one machine, with Docker containers as nodes.
//!
//! The binary (`main.rs`) is a thin shell over [`cli`]. Modules, each owning one concern:
//! [`config`] (the cluster config file), [`image_ref`] (image references), [`runtime`] (Docker), [`cluster`] (create/delete/list,
//! create's steps), [`kubeadm`] (kubeadm's config), [`kubeconfig`] (the user's kubeconfig),
//! [`kube`] (the API client and waits), [`node_image`] (building node images), [`ui`] (output).

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
pub mod runtime;
pub mod ui;
pub mod version;
pub mod wait;
