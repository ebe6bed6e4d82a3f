//! The steps of `create cluster`, in the order create.rs runs them. Each owns one stage of
//! bringing a cluster up and reads/writes the shared [`Ctx`](super::create::Ctx).

pub mod addons;
pub mod cni;
pub mod export_kubeconfig;
pub mod join;
pub mod kubeadm_init;
pub mod loadbalancer;
pub mod provision;
pub mod registry;
pub mod storage;
pub mod wait;
pub mod warm;
